# collector-probe: network v1
# Read-only. From this host: DNS resolution of each target (the article's nslookup) and a
# bounded TCP connect to each target port (the article's Test-NetConnection -Port 3389, without
# its ping and its unbounded wait), and the WinHTTP proxy. UDP (3391) cannot be tested this way.
param(
    [string[]]$Targets = @(),
    [int]$TimeoutMs = 3000
)
# collector: common

$data = [ordered]@{
    dns         = @()
    tcp         = @()
    winhttp     = $null
}
$names = @($Targets | ForEach-Object { $_.Substring(0, $_.LastIndexOf(':')) } | Select-Object -Unique)
$data.dns = @(
    foreach ($name in $names) {
        $entry = [ordered]@{ name = $name; addresses = @(); error = $null }
        try {
            $entry.addresses = @([System.Net.Dns]::GetHostAddresses($name) | ForEach-Object { $_.IPAddressToString })
        }
        catch {
            $entry.error = $_.Exception.InnerException.Message
            if (-not $entry.error) {
                $entry.error = $_.Exception.Message
            }
        }
        $entry
    }
)
$data.tcp = @(
    foreach ($target in $Targets) {
        $name = $target.Substring(0, $target.LastIndexOf(':'))
        $port = [int]$target.Substring($target.LastIndexOf(':') + 1)
        $entry = [ordered]@{ name = $name; port = $port; connected = $false; elapsed_ms = $null; error = $null }
        $client = New-Object -TypeName 'System.Net.Sockets.TcpClient'
        $watch = [System.Diagnostics.Stopwatch]::StartNew()
        try {
            $task = $client.ConnectAsync($name, $port)
            if ($task.Wait($TimeoutMs)) {
                $entry.connected = $client.Connected
            }
            else {
                $entry.error = 'timed out after ' + $TimeoutMs + ' ms'
            }
        }
        catch {
            $inner = $_.Exception
            while ($inner.InnerException) {
                $inner = $inner.InnerException
            }
            $entry.error = $inner.Message
        }
        finally {
            $entry.elapsed_ms = [int]$watch.ElapsedMilliseconds
            $client.Dispose()
        }
        $entry
    }
)
try {
    # WinHttpSettings: DWORD version, DWORD counter, DWORD flags (1 direct, 3 proxy), then the
    # proxy and bypass strings, each preceded by its length. Absent means direct.
    $raw = Get-ProbeRegistryValue -Path 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Internet Settings\Connections' -Name 'WinHttpSettings'
    $winhttp = [ordered]@{ proxy = $null; bypass = $null }
    if ($raw -and $raw.Length -ge 16) {
        $proxyLength = [BitConverter]::ToInt32($raw, 12)
        if ($proxyLength -gt 0) {
            $winhttp.proxy = [System.Text.Encoding]::ASCII.GetString($raw, 16, $proxyLength)
        }
        $bypassAt = 16 + $proxyLength
        if ($raw.Length -ge $bypassAt + 4) {
            $bypassLength = [BitConverter]::ToInt32($raw, $bypassAt)
            if ($bypassLength -gt 0) {
                $winhttp.bypass = [System.Text.Encoding]::ASCII.GetString($raw, $bypassAt + 4, $bypassLength)
            }
        }
    }
    $data.winhttp = $winhttp
}
catch {
    Add-ProbeError -Step 'WinHTTP proxy' -ErrorRecord $_
}

Write-ProbeResult -Probe 'network' -Version 1 -Data $data
