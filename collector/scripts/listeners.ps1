# collector-probe: listeners v1
# Read-only. What listens on the RDP port (3389 or the configured PortNumber), 443 and UDP
# 3389/3391, with the owning process and service: the article's `netstat -ano | findstr 3389`.
# Uses Get-NetTCPConnection / Get-NetUDPEndpoint, or parses `netstat -ano` where those cmdlets
# are missing (by column position, so the display language does not matter).
param(
    [int[]]$TcpPorts = @(3389, 443),
    [int[]]$UdpPorts = @(3389, 3391)
)
# collector: common

$data = [ordered]@{
    rdp_port     = $null
    source       = $null
    tcp          = @()
    udp          = @()
    netstat_rdp  = @()
}
$rdpPort = Get-ProbeRegistryValue -Path 'HKLM:\SYSTEM\CurrentControlSet\Control\Terminal Server\WinStations\RDP-Tcp' -Name 'PortNumber'
if ($null -ne $rdpPort) {
    $data.rdp_port = [int]$rdpPort
    $TcpPorts = @($TcpPorts + [int]$rdpPort | Select-Object -Unique)
}

$servicesByPid = @{}
try {
    foreach ($svc in @(Get-CimInstance -ClassName 'Win32_Service' | Where-Object { $_.ProcessId -gt 0 })) {
        $key = [int]$svc.ProcessId
        if (-not $servicesByPid.ContainsKey($key)) {
            $servicesByPid[$key] = New-Object -TypeName 'System.Collections.ArrayList'
        }
        [void]$servicesByPid[$key].Add([string]$svc.Name)
    }
}
catch {
    Add-ProbeError -Step 'Win32_Service' -ErrorRecord $_
}

function ConvertTo-ProbeListener {
    param([string]$Protocol, [string]$Address, [int]$Port, [int]$ProcessId)
    $name = $null
    $process = Get-Process -Id $ProcessId -ErrorAction SilentlyContinue
    if ($process) {
        $name = [string]$process.ProcessName
    }
    $services = @()
    if ($servicesByPid.ContainsKey($ProcessId)) {
        $services = @($servicesByPid[$ProcessId].ToArray())
    }
    return [ordered]@{
        protocol      = $Protocol
        local_address = $Address
        port          = $Port
        process_id    = $ProcessId
        process_name  = $name
        services      = $services
    }
}

if (Get-Command -Name 'Get-NetTCPConnection' -ErrorAction SilentlyContinue) {
    $data.source = 'Get-NetTCPConnection'
    try {
        $data.tcp = @(
            Get-NetTCPConnection -State 'Listen' | Where-Object { $TcpPorts -contains [int]$_.LocalPort } | ForEach-Object {
                ConvertTo-ProbeListener -Protocol 'TCP' -Address ([string]$_.LocalAddress) -Port ([int]$_.LocalPort) -ProcessId ([int]$_.OwningProcess)
            }
        )
    }
    catch {
        Add-ProbeError -Step 'Get-NetTCPConnection' -ErrorRecord $_
    }
    try {
        $data.udp = @(
            Get-NetUDPEndpoint | Where-Object { $UdpPorts -contains [int]$_.LocalPort } | ForEach-Object {
                ConvertTo-ProbeListener -Protocol 'UDP' -Address ([string]$_.LocalAddress) -Port ([int]$_.LocalPort) -ProcessId ([int]$_.OwningProcess)
            }
        )
    }
    catch {
        Add-ProbeError -Step 'Get-NetUDPEndpoint' -ErrorRecord $_
    }
}
else {
    $data.source = 'netstat'
}

try {
    $lines = @(& netstat.exe -ano)
    $wanted = [string]$(if ($data.rdp_port) { $data.rdp_port } else { 3389 })
    $data.netstat_rdp = @($lines | Where-Object { $_ -match (':' + $wanted + '\s') } | Select-Object -First 50 | ForEach-Object { $_.Trim() })
    if ($data.source -eq 'netstat') {
        $tcp = New-Object -TypeName 'System.Collections.ArrayList'
        $udp = New-Object -TypeName 'System.Collections.ArrayList'
        foreach ($line in $lines) {
            $cols = @($line.Trim() -split '\s+')
            if ($cols.Count -lt 4) {
                continue
            }
            $local = $cols[1]
            $port = 0
            if (-not [int]::TryParse($local.Substring($local.LastIndexOf(':') + 1), [ref]$port)) {
                continue
            }
            $address = $local.Substring(0, $local.LastIndexOf(':')).Trim('[', ']')
            # A TCP listener has no remote end (0.0.0.0:0 or [::]:0), whatever the state column says.
            if ($cols[0] -eq 'TCP' -and $cols.Count -ge 5 -and $cols[2] -match ':0$' -and $TcpPorts -contains $port) {
                [void]$tcp.Add((ConvertTo-ProbeListener -Protocol 'TCP' -Address $address -Port $port -ProcessId ([int]$cols[4])))
            }
            elseif ($cols[0] -eq 'UDP' -and $UdpPorts -contains $port) {
                [void]$udp.Add((ConvertTo-ProbeListener -Protocol 'UDP' -Address $address -Port $port -ProcessId ([int]$cols[3])))
            }
        }
        $data.tcp = @($tcp.ToArray())
        $data.udp = @($udp.ToArray())
    }
}
catch {
    Add-ProbeError -Step 'netstat' -ErrorRecord $_
}

Write-ProbeResult -Probe 'listeners' -Version 1 -Data $data
