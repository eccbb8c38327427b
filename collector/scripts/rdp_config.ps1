# collector-probe: rdp_config v1
# Read-only. Whether this host accepts Remote Desktop connections and how: fDenyTSConnections
# and its policy override, the RDP-Tcp listener (port, security layer, NLA, encryption level),
# Win32_TSGeneralSetting with the listener certificate and the chain this host builds for it,
# the Windows Firewall as enforced, Group Policy merged with the host's own (the Remote Desktop
# group's rules, any other TCP rule that names the listener's port, each profile's settings, and
# the category of each connected network, which decides the profile in force), who may (and who
# may not) log on through Remote Desktop Services, and RD Licensing (mode, license servers,
# grace period).
#
# The logon rights come from `secedit /export /mergedpolicy /areas USER_RIGHTS` (the effective
# rights, Group Policy and local merged), as MSRD-Diag reads them.
# secedit only reads the policy but can only hand it over as a file, so it writes its export
# and its log to two temp files of this probe's own, deleted in a finally block: the one write
# this probe makes. (The read-only alternative, LsaEnumerateAccountsWithUserRight through
# Add-Type, compiles C# with csc.exe, which writes temp files of its own, and loads an assembly
# into the session: heavier, and no less of a write.)
param()
# collector: common

function ConvertTo-ProbePrincipal {
    # One secedit entry, '*S-1-5-32-555' (a SID) or an account name, as both SID and account.
    param([Parameter(Mandatory = $true)][string]$Entry)
    $sid = $null
    $account = $null
    if ($Entry.StartsWith('*')) {
        $sid = $Entry.Substring(1)
        try {
            $account = (New-Object -TypeName 'System.Security.Principal.SecurityIdentifier' -ArgumentList $sid).Translate([System.Security.Principal.NTAccount]).Value
        }
        catch {
            $account = $null
        }
    }
    else {
        $account = $Entry
        try {
            $sid = (New-Object -TypeName 'System.Security.Principal.NTAccount' -ArgumentList $Entry).Translate([System.Security.Principal.SecurityIdentifier]).Value
        }
        catch {
            $sid = $null
        }
    }
    return [ordered]@{ sid = $sid; account = $account }
}

function ConvertTo-ProbeFirewallRule {
    # One enforced firewall rule with its port filter, as the contract's FirewallRule.
    param(
        [Parameter(Mandatory = $true)]$Rule,
        $PortFilter
    )
    return [ordered]@{
        name         = [string]$Rule.Name
        display_name = [string]$Rule.DisplayName
        enabled      = ([string]$Rule.Enabled -eq 'True')
        direction    = [string]$Rule.Direction
        action       = [string]$Rule.Action
        profiles     = [string]$Rule.Profile
        protocol     = [string]$PortFilter.Protocol
        local_ports  = @($PortFilter.LocalPort | ForEach-Object { [string]$_ })
        source       = [string]$Rule.PolicyStoreSourceType
    }
}

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
    firewall_profiles           = @()
    network_categories          = @()
    user_rights                 = $null
    licensing                   = [ordered]@{
        terminal_server_mode         = $null
        licensing_type               = $null
        licensing_name               = $null
        policy_source_licensing_type = $null
        licensing_mode_policy        = $null
        license_servers_policy       = @()
        license_servers_specified    = @()
        grace_period_days            = $null
    }
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
    # '@FirewallAPI.dll,-28752' is the Remote Desktop group in every display language. The active
    # store is what is enforced: Group Policy's rules merged with the host's own (which Group Policy
    # may exclude); without -PolicyStore the cmdlet reads the host's own rules only.
    $rules = @(Get-NetFirewallRule -Group '@FirewallAPI.dll,-28752' -PolicyStore ActiveStore -ErrorAction SilentlyContinue)
    $data.firewall_rules = @(
        foreach ($rule in $rules) {
            ConvertTo-ProbeFirewallRule -Rule $rule -PortFilter ($rule | Get-NetFirewallPortFilter)
        }
    )
}
catch {
    Add-ProbeError -Step 'Get-NetFirewallRule' -ErrorRecord $_
}
try {
    # Enforced TCP rules outside that group that name the listener's port (a GPO's own "allow
    # RDP" rule, say): the port filters are read in one query, and only the matching ones'
    # rules are looked up.
    $rdpPort = '3389'
    if ($null -ne $data.port_number) {
        $rdpPort = [string]$data.port_number
    }
    $seen = @{}
    foreach ($known in $data.firewall_rules) {
        $seen[$known.name] = $true
    }
    $filters = @(Get-NetFirewallPortFilter -PolicyStore ActiveStore -ErrorAction Stop | Where-Object { [string]$_.Protocol -eq 'TCP' -and @($_.LocalPort | ForEach-Object { [string]$_ }) -contains $rdpPort })
    foreach ($filter in $filters) {
        foreach ($rule in @(Get-NetFirewallRule -AssociatedNetFirewallPortFilter $filter -ErrorAction Stop)) {
            if (-not $seen.ContainsKey([string]$rule.Name)) {
                $seen[[string]$rule.Name] = $true
                $data.firewall_rules += ConvertTo-ProbeFirewallRule -Rule $rule -PortFilter $filter
            }
        }
    }
}
catch {
    Add-ProbeError -Step 'Get-NetFirewallPortFilter' -ErrorRecord $_
}
try {
    # AllowInboundRules False is "Block all incoming connections, including those in the list of
    # allowed apps": no rule admits anything. GpoBoolean values: True, False, NotConfigured.
    $data.firewall_profiles = @(
        foreach ($firewallProfile in @(Get-NetFirewallProfile -PolicyStore ActiveStore -ErrorAction Stop)) {
            [ordered]@{
                name                       = [string]$firewallProfile.Name
                enabled                    = [string]$firewallProfile.Enabled
                default_inbound_action     = [string]$firewallProfile.DefaultInboundAction
                allow_inbound_rules        = [string]$firewallProfile.AllowInboundRules
                allow_local_firewall_rules = [string]$firewallProfile.AllowLocalFirewallRules
            }
        }
    )
}
catch {
    Add-ProbeError -Step 'Get-NetFirewallProfile' -ErrorRecord $_
}
try {
    # DomainAuthenticated, Private or Public per connected network: the profile each one is under.
    $data.network_categories = @(Get-NetConnectionProfile -ErrorAction Stop | ForEach-Object { [string]$_.NetworkCategory })
}
catch {
    Add-ProbeError -Step 'Get-NetConnectionProfile' -ErrorRecord $_
}

$seceditFiles = @(
    (Join-Path -Path $env:TEMP -ChildPath ('rdp-collector-rights-' + [guid]::NewGuid().ToString('N') + '.inf')),
    (Join-Path -Path $env:TEMP -ChildPath ('rdp-collector-rights-' + [guid]::NewGuid().ToString('N') + '.log'))
)
try {
    $null = & (Join-Path -Path $env:SystemRoot -ChildPath 'System32\secedit.exe') '/export' '/mergedpolicy' '/areas' 'USER_RIGHTS' '/cfg' $seceditFiles[0] '/log' $seceditFiles[1] '/quiet'
    if ($LASTEXITCODE -ne 0) {
        throw ('secedit /export exited with code ' + $LASTEXITCODE + ' (it needs an elevated administrator)')
    }
    $rights = [ordered]@{ remote_interactive = @(); deny_remote_interactive = @() }
    # The export is UTF-16 with a byte order mark; the privilege names in it are never translated.
    foreach ($line in (Get-Content -LiteralPath $seceditFiles[0])) {
        if ($line -match '^\s*(SeRemoteInteractiveLogonRight|SeDenyRemoteInteractiveLogonRight)\s*=\s*(.*)$') {
            $right = $Matches[1]
            $entries = @($Matches[2].Split(',') | ForEach-Object { $_.Trim() } | Where-Object { $_ })
            $principals = @(foreach ($entry in $entries) { ConvertTo-ProbePrincipal -Entry $entry })
            if ($right -eq 'SeRemoteInteractiveLogonRight') {
                $rights.remote_interactive = $principals
            }
            else {
                $rights.deny_remote_interactive = $principals
            }
        }
    }
    $data.user_rights = $rights
}
catch {
    Add-ProbeError -Step 'user rights (secedit /export)' -ErrorRecord $_
}
finally {
    Remove-Item -LiteralPath $seceditFiles -Force -ErrorAction SilentlyContinue
}
$terminalSettings = $null
try {
    # Get-WmiObject rather than Get-CimInstance: the grace period below is a method of this object.
    $terminalSettings = Get-WmiObject -Namespace 'root\cimv2\TerminalServices' -Class 'Win32_TerminalServiceSetting'
    $data.licensing.terminal_server_mode = [int]$terminalSettings.TerminalServerMode
    $data.licensing.licensing_type = [int]$terminalSettings.LicensingType
    $data.licensing.licensing_name = [string]$terminalSettings.LicensingName
    $data.licensing.policy_source_licensing_type = [int]$terminalSettings.PolicySourceLicensingType
}
catch {
    Add-ProbeError -Step 'Win32_TerminalServiceSetting' -ErrorRecord $_
}
try {
    $data.licensing.licensing_mode_policy = Get-ProbeRegistryValue -Path $policy -Name 'LicensingMode'
    $servers = Get-ProbeRegistryValue -Path $policy -Name 'LicenseServers'
    if ($servers) {
        $data.licensing.license_servers_policy = @([string]$servers -split '[,;]' | ForEach-Object { $_.Trim() } | Where-Object { $_ })
    }
    $specified = Get-ProbeRegistryValue -Path 'HKLM:\SYSTEM\CurrentControlSet\Services\TermService\Parameters\LicenseServers' -Name 'SpecifiedLicenseServers'
    $data.licensing.license_servers_specified = @($specified | ForEach-Object { [string]$_ } | Where-Object { $_ })
}
catch {
    Add-ProbeError -Step 'licensing registry' -ErrorRecord $_
}
try {
    if ($terminalSettings -and $data.licensing.terminal_server_mode -eq 1) {
        # GetGracePeriodDays only reads the days left in the licensing grace period (documented as
        # "retrieves the number of days"); it is the one WMI method this probe calls.
        $data.licensing.grace_period_days = [int]$terminalSettings.GetGracePeriodDays().DaysLeft
    }
}
catch {
    Add-ProbeError -Step 'licensing grace period' -ErrorRecord $_
}

Write-ProbeResult -Probe 'rdp_config' -Version 1 -Data $data
