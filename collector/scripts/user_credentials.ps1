# collector-probe: user_credentials v1
# CHANGES THE HOST, and only runs with `collect --user-context`: cmdkey shows only the vault of
# the user who runs it, and over WinRM that is the administrator's, so the desktop user's saved
# TERMSRV/ and RD Gateway credentials (the article's Fix 4) are only visible from inside their
# own logon. For each user with a desktop (explorer.exe) this registers a one-shot scheduled
# task that runs `cmdkey /list` as that user (Interactive: no password is needed or stored),
# waits for it within TimeoutSeconds, keeps only the target names (cmdkey never shows
# passwords), and always unregisters the task and deletes its output.
# The output goes into a folder of its own, made for this user and this run with an explicit ACL
# before the task exists: SYSTEM, Administrators and that user only, nothing inherited from
# %ProgramData% (where every local user may read). The whole folder is removed afterwards.
param(
    [int]$TimeoutSeconds = 30
)
# collector: common

$invariant = [System.Globalization.CultureInfo]::InvariantCulture
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
        $id = [guid]::NewGuid().ToString('N', $invariant)
        $taskName = 'rdp-collector-cmdkey-' + $id
        $folder = $null
        $outFile = $null
        $created = $false
        $ready = $false
        try {
            # The private folder, created with its ACL in one call: never readable by anyone else.
            try {
                $folder = Join-Path -Path $env:ProgramData -ChildPath ('rdp-collector-' + $id)
                $outFile = Join-Path -Path $folder -ChildPath 'cmdkey.txt'
                $user = (New-Object -TypeName 'System.Security.Principal.NTAccount' -ArgumentList ([string]$account)).Translate([System.Security.Principal.SecurityIdentifier])
                $inherit = [System.Security.AccessControl.InheritanceFlags]'ContainerInherit, ObjectInherit'
                $propagate = [System.Security.AccessControl.PropagationFlags]::None
                $allow = [System.Security.AccessControl.AccessControlType]::Allow
                $acl = New-Object -TypeName 'System.Security.AccessControl.DirectorySecurity'
                $acl.SetAccessRuleProtection($true, $false)
                $grants = @(
                    @((New-Object -TypeName 'System.Security.Principal.SecurityIdentifier' -ArgumentList 'S-1-5-18'), [System.Security.AccessControl.FileSystemRights]::FullControl),
                    @((New-Object -TypeName 'System.Security.Principal.SecurityIdentifier' -ArgumentList 'S-1-5-32-544'), [System.Security.AccessControl.FileSystemRights]::FullControl),
                    @($user, [System.Security.AccessControl.FileSystemRights]::Modify)
                )
                foreach ($grant in $grants) {
                    $acl.AddAccessRule((New-Object -TypeName 'System.Security.AccessControl.FileSystemAccessRule' -ArgumentList $grant[0], $grant[1], $inherit, $propagate, $allow))
                }
                if ([System.IO.Directory]::Exists($folder)) {
                    throw ('the folder ' + $folder + ' exists already')
                }
                [void][System.IO.Directory]::CreateDirectory($folder, $acl)
                $created = $true
                if (-not [System.IO.Directory]::GetAccessControl($folder).AreAccessRulesProtected) {
                    throw ('the folder ' + $folder + ' did not get its own ACL')
                }
                $ready = $true
            }
            catch {
                Add-ProbeError -Step ('cmdkey as ' + $account + ': private folder') -ErrorRecord $_
            }
            if ($ready) {
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
                        $entry.error = 'cmdkey did not finish within ' + $TimeoutSeconds.ToString($invariant) + ' s'
                    }
                }
                catch {
                    Add-ProbeError -Step ('cmdkey as ' + $account) -ErrorRecord $_
                }
            }
        }
        finally {
            try {
                if (Get-ScheduledTask -TaskName $taskName -ErrorAction SilentlyContinue) {
                    Unregister-ScheduledTask -TaskName $taskName -Confirm:$false
                }
            }
            catch {
                Add-ProbeError -Step ('cleanup after cmdkey as ' + $account + ': scheduled task') -ErrorRecord $_
            }
            try {
                if ($created -and [System.IO.Directory]::Exists($folder)) {
                    Remove-Item -LiteralPath $folder -Recurse -Force
                }
            }
            catch {
                Add-ProbeError -Step ('cleanup after cmdkey as ' + $account + ': private folder') -ErrorRecord $_
            }
        }
        $entry
    }
)

Write-ProbeResult -Probe 'user_credentials' -Version 1 -Data $data
