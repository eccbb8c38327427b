# collector-probe: services v1
# Read-only. The Remote Desktop services (the article's Get-Service -Name TermService) and the
# gateway's services: state, start mode, account and process, or absent when not installed.
param(
    [string[]]$Names = @('TermService', 'UmRdpService', 'SessionEnv')
)
# collector: common

$data = [ordered]@{ services = @() }
try {
    $installed = @(Get-CimInstance -ClassName 'Win32_Service' | Where-Object { $Names -contains $_.Name })
    $data.services = @(
        foreach ($name in $Names) {
            $svc = $installed | Where-Object { $_.Name -eq $name } | Select-Object -First 1
            if ($svc) {
                [ordered]@{
                    name         = [string]$svc.Name
                    present      = $true
                    display_name = [string]$svc.DisplayName
                    state        = [string]$svc.State
                    start_mode   = [string]$svc.StartMode
                    account      = [string]$svc.StartName
                    process_id   = [int]$svc.ProcessId
                }
            }
            else {
                [ordered]@{
                    name         = $name
                    present      = $false
                    display_name = $null
                    state        = $null
                    start_mode   = $null
                    account      = $null
                    process_id   = $null
                }
            }
        }
    )
}
catch {
    Add-ProbeError -Step 'Win32_Service' -ErrorRecord $_
}

Write-ProbeResult -Probe 'services' -Version 1 -Data $data
