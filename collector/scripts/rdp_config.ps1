# collector-probe: rdp_config v1
# Read-only. Whether this host accepts Remote Desktop connections and how: fDenyTSConnections
# and its policy override, the RDP-Tcp listener (port, security layer, NLA, encryption level),
# Win32_TSGeneralSetting with the listener certificate and the chain this host builds for it,
# and the Windows Firewall rules of the Remote Desktop group.
param()
# collector: common

$ts = 'HKLM:\SYSTEM\CurrentControlSet\Control\Terminal Server'
$rdpTcp = 'HKLM:\SYSTEM\CurrentControlSet\Control\Terminal Server\WinStations\RDP-Tcp'
$policy = 'HKLM:\SOFTWARE\Policies\Microsoft\Windows NT\Terminal Services'

$data = [ordered]@{
    deny_ts_connections         = $null
    deny_ts_connections_policy  = $null
    port_number                 = $null
    security_layer              = $null
    security_layer_policy       = $null
    user_authentication         = $null
    user_authentication_policy  = $null
    min_encryption_level        = $null
    min_encryption_level_policy = $null
    certificate_hash_registry   = $null
    general_setting             = $null
    listener_certificate        = $null
    firewall_rules              = @()
}
try {
    $data.deny_ts_connections = Get-ProbeRegistryValue -Path $ts -Name 'fDenyTSConnections'
    $data.deny_ts_connections_policy = Get-ProbeRegistryValue -Path $policy -Name 'fDenyTSConnections'
    $data.port_number = Get-ProbeRegistryValue -Path $rdpTcp -Name 'PortNumber'
    $data.security_layer = Get-ProbeRegistryValue -Path $rdpTcp -Name 'SecurityLayer'
    $data.security_layer_policy = Get-ProbeRegistryValue -Path $policy -Name 'SecurityLayer'
    $data.user_authentication = Get-ProbeRegistryValue -Path $rdpTcp -Name 'UserAuthentication'
    $data.user_authentication_policy = Get-ProbeRegistryValue -Path $policy -Name 'UserAuthentication'
    $data.min_encryption_level = Get-ProbeRegistryValue -Path $rdpTcp -Name 'MinEncryptionLevel'
    $data.min_encryption_level_policy = Get-ProbeRegistryValue -Path $policy -Name 'MinEncryptionLevel'
    $data.certificate_hash_registry = ConvertTo-ProbeHex -Bytes (Get-ProbeRegistryValue -Path $rdpTcp -Name 'SSLCertificateSHA1Hash')
}
catch {
    Add-ProbeError -Step 'registry' -ErrorRecord $_
}
try {
    $setting = Get-CimInstance -Namespace 'root\cimv2\TerminalServices' -ClassName 'Win32_TSGeneralSetting' -Filter "TerminalName='RDP-Tcp'"
    if ($setting) {
        $data.general_setting = [ordered]@{
            ssl_certificate_sha1_hash      = [string]$setting.SSLCertificateSHA1Hash
            ssl_certificate_sha1_hash_type = [int]$setting.SSLCertificateSHA1HashType
            security_layer                 = [int]$setting.SecurityLayer
            user_authentication_required   = [int]$setting.UserAuthenticationRequired
            min_encryption_level           = [int]$setting.MinEncryptionLevel
            policy_source_security_layer   = [int]$setting.PolicySourceSecurityLayer
            policy_source_user_auth        = [int]$setting.PolicySourceUserAuthenticationRequired
        }
    }
}
catch {
    Add-ProbeError -Step 'Win32_TSGeneralSetting' -ErrorRecord $_
}
try {
    if ($data.general_setting -and $data.general_setting.ssl_certificate_sha1_hash) {
        $certificate = Find-ProbeCertificate -Thumbprint $data.general_setting.ssl_certificate_sha1_hash
        if ($certificate) {
            $data.listener_certificate = ConvertTo-ProbeCertificate -Certificate $certificate
        }
    }
}
catch {
    Add-ProbeError -Step 'listener certificate' -ErrorRecord $_
}
try {
    # '@FirewallAPI.dll,-28752' is the Remote Desktop group in every display language.
    $rules = @(Get-NetFirewallRule -Group '@FirewallAPI.dll,-28752' -ErrorAction SilentlyContinue)
    $data.firewall_rules = @(
        foreach ($rule in $rules) {
            $ports = $rule | Get-NetFirewallPortFilter
            [ordered]@{
                name         = [string]$rule.Name
                display_name = [string]$rule.DisplayName
                enabled      = ([string]$rule.Enabled -eq 'True')
                direction    = [string]$rule.Direction
                action       = [string]$rule.Action
                profiles     = [string]$rule.Profile
                protocol     = [string]$ports.Protocol
                local_ports  = @($ports.LocalPort | ForEach-Object { [string]$_ })
            }
        }
    )
}
catch {
    Add-ProbeError -Step 'Get-NetFirewallRule' -ErrorRecord $_
}

Write-ProbeResult -Probe 'rdp_config' -Version 1 -Data $data
