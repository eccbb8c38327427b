# collector-probe: user_credentials v1
# CHANGES THE HOST, and only runs with `collect --user-context`: cmdkey shows only the vault of
# the user who runs it, and over WinRM that is the administrator's, so the desktop user's saved
# TERMSRV/ and RD Gateway credentials (the article's Fix 4) are only visible from inside their
# own logon. For each user with a desktop (explorer.exe) this registers a one-shot scheduled
# task that runs `cmdkey /list` as that user (Interactive: no password is needed or stored),
# waits for it within TimeoutSeconds, keeps only the target names (cmdkey never shows
# passwords), and always unregisters the task and deletes its output file.
param(
    [int]$TimeoutSeconds = 30
)
# collector: common

$data = [ordered]@{ users = @() }
$accounts = @()
try {
    $accounts = @(Get-Process -Name 'explorer' -IncludeUserName -ErrorAction SilentlyContinue | ForEach-Object { $_.UserName } | Where-Object { $_ } | Select-Object -Unique)
}
catch {
    Add-ProbeError -Step 'logged-on users' -ErrorRecord $_
}
$data.users = @(
    foreach ($account in $accounts) {
        $entry = [ordered]@{ account = [string]$account; targets = @(); error = $null }
        $id = [guid]::NewGuid().ToString('N')
        $taskName = 'rdp-collector-cmdkey-' + $id
        $outFile = Join-Path -Path $env:ProgramData -ChildPath ('rdp-collector-' + $id + '.txt')
        try {
            $action = New-ScheduledTaskAction -Execute 'cmd.exe' -Argument ('/c cmdkey /list > "' + $outFile + '" 2>&1')
            $principal = New-ScheduledTaskPrincipal -UserId $account -LogonType 'Interactive' -RunLevel 'Limited'
            [void](Register-ScheduledTask -TaskName $taskName -Action $action -Principal $principal)
            Start-ScheduledTask -TaskName $taskName
            $deadline = (Get-Date).AddSeconds($TimeoutSeconds)
            $finished = $false
            while (-not $finished -and (Get-Date) -lt $deadline) {
                Start-Sleep -Milliseconds 500
                $state = [string](Get-ScheduledTask -TaskName $taskName).State
                $finished = ($state -ne 'Running') -and (Test-Path -LiteralPath $outFile)
            }
            if ($finished) {
                $entry.targets = @(
                    Get-Content -LiteralPath $outFile | Where-Object { $_ -match 'target=(.+)$' } | ForEach-Object { $Matches[1].Trim() }
                )
            }
            else {
                $entry.error = 'cmdkey did not finish within ' + $TimeoutSeconds + ' s'
            }
        }
        catch {
            Add-ProbeError -Step ('cmdkey as ' + $account) -ErrorRecord $_
        }
        finally {
            Unregister-ScheduledTask -TaskName $taskName -Confirm:$false -ErrorAction SilentlyContinue
            Remove-Item -LiteralPath $outFile -Force -ErrorAction SilentlyContinue
        }
        $entry
    }
)

Write-ProbeResult -Probe 'user_credentials' -Version 1 -Data $data
