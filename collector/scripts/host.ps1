# collector-probe: host v1
# Read-only. Who the host is: name, domain, OS and build, PowerShell version, boot time and its
# clock in UTC (the collector measures skew against its own; Kerberos fails past 5 minutes).
param()
# collector: common

$data = [ordered]@{
    computer_name  = [string]$env:COMPUTERNAME
    domain         = $null
    part_of_domain = $null
    os_caption     = $null
    os_version     = $null
    os_build       = $null
    ps_version     = [string]$PSVersionTable.PSVersion
    last_boot_utc  = $null
    utc_now        = ConvertTo-ProbeDate -Value ([datetime]::UtcNow)
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

Write-ProbeResult -Probe 'host' -Version 1 -Data $data
