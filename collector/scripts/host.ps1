# collector-probe: host v1
# Read-only. Who the host is (name, domain, OS, PowerShell), its clock in UTC (the collector
# measures skew against its own: Kerberos fails past 5 minutes), the domain secure channel, the
# SCHANNEL protocol switches and CredSSP's encryption-oracle policy (both make peers refuse each
# other), and whether a reboot is pending.
param()
# collector: common

$data = [ordered]@{
    computer_name           = [string]$env:COMPUTERNAME
    domain                  = $null
    part_of_domain          = $null
    os_caption              = $null
    os_version              = $null
    os_build                = $null
    ps_version              = [string]$PSVersionTable.PSVersion
    last_boot_utc           = $null
    utc_now                 = ConvertTo-ProbeDate -Value ([datetime]::UtcNow)
    secure_channel          = $null
    schannel                = @()
    strong_crypto           = $null
    credssp_oracle          = $null
    pending_reboot          = @()
}
try {
    $os = Get-CimInstance -ClassName 'Win32_OperatingSystem'
    $data.os_caption = [string]$os.Caption
    $data.os_version = [string]$os.Version
    $data.os_build = [string]$os.BuildNumber
    $data.last_boot_utc = ConvertTo-ProbeDate -Value $os.LastBootUpTime
}
catch {
    Add-ProbeError -Step 'Win32_OperatingSystem' -ErrorRecord $_
}
try {
    $cs = Get-CimInstance -ClassName 'Win32_ComputerSystem'
    $data.domain = [string]$cs.Domain
    $data.part_of_domain = [bool]$cs.PartOfDomain
}
catch {
    Add-ProbeError -Step 'Win32_ComputerSystem' -ErrorRecord $_
}
if ($data.part_of_domain) {
    try {
        # Tests the machine account's secure channel to a domain controller; changes nothing.
        $data.secure_channel = [bool](Test-ComputerSecureChannel)
    }
    catch {
        Add-ProbeError -Step 'Test-ComputerSecureChannel' -ErrorRecord $_
    }
}
try {
    $base = 'HKLM:\SYSTEM\CurrentControlSet\Control\SecurityProviders\SCHANNEL\Protocols'
    $data.schannel = @(
        foreach ($protocol in @('SSL 3.0', 'TLS 1.0', 'TLS 1.1', 'TLS 1.2', 'TLS 1.3')) {
            foreach ($side in @('Client', 'Server')) {
                $path = Join-Path -Path (Join-Path -Path $base -ChildPath $protocol) -ChildPath $side
                $enabled = Get-ProbeRegistryValue -Path $path -Name 'Enabled'
                $disabledByDefault = Get-ProbeRegistryValue -Path $path -Name 'DisabledByDefault'
                if ($null -ne $enabled -or $null -ne $disabledByDefault) {
                    [ordered]@{
                        protocol            = $protocol
                        side                = $side
                        enabled             = $enabled
                        disabled_by_default = $disabledByDefault
                    }
                }
            }
        }
    )
}
catch {
    Add-ProbeError -Step 'SCHANNEL' -ErrorRecord $_
}
try {
    $data.strong_crypto = Get-ProbeRegistryValue -Path 'HKLM:\SOFTWARE\Microsoft\.NETFramework\v4.0.30319' -Name 'SchUseStrongCrypto'
    $data.credssp_oracle = Get-ProbeRegistryValue -Path 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Policies\System\CredSSP\Parameters' -Name 'AllowEncryptionOracle'
}
catch {
    Add-ProbeError -Step 'crypto policy' -ErrorRecord $_
}
try {
    $reasons = New-Object -TypeName 'System.Collections.ArrayList'
    if (Test-Path -LiteralPath 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Component Based Servicing\RebootPending') {
        [void]$reasons.Add('Component Based Servicing')
    }
    if (Test-Path -LiteralPath 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\WindowsUpdate\Auto Update\RebootRequired') {
        [void]$reasons.Add('Windows Update')
    }
    if (Get-ProbeRegistryValue -Path 'HKLM:\SYSTEM\CurrentControlSet\Control\Session Manager' -Name 'PendingFileRenameOperations') {
        [void]$reasons.Add('PendingFileRenameOperations')
    }
    $data.pending_reboot = @($reasons.ToArray())
}
catch {
    Add-ProbeError -Step 'pending reboot' -ErrorRecord $_
}

Write-ProbeResult -Probe 'host' -Version 1 -Data $data
