# collector-probe: client v1
# Read-only. The RDP client's side of the article: UDP forced off (fClientDisableUDP policy,
# DisableUDPTransport), the gateway transport setting, RD Gateway client tracing for every
# logged-on user (RDGClientTrace / RDGClientTraceFile under HKEY_USERS, since HKCU over WinRM is
# the admin's hive) with the interesting lines of each trace file, the gateway's TLS chain as
# THIS client receives it (so a middlebox doing SSL inspection shows), and the thumbprints of
# the client's trusted roots, and which agents known to intercept TLS are running (by process
# name: evidence for SSL inspection on the path, as MSRD-Diag looks for them).
param(
    [string]$GatewayName = '',
    [int]$GatewayPort = 443,
    [int]$TimeoutMs = 5000,
    [int]$TraceLines = 400,
    [string[]]$AgentProcesses = @('ZSATunnel', 'ZSAService', 'stAgentSvc', 'nsdiag', 'wssad', 'PanGPS', 'PanGPA', 'vpnagent', 'acumbrellaagent', 'fppsvc', 'websense')
)
# collector: common

$client = 'HKLM:\SOFTWARE\Microsoft\Terminal Server Client'
$data = [ordered]@{
    disable_udp_policy   = $null
    disable_udp_transport = $null
    rdg_client_transport = $null
    users                = @()
    gateway_tls          = $null
    trusted_roots        = @()
    agents_checked       = @($AgentProcesses)
    agents               = @()
}
try {
    $data.disable_udp_policy = Get-ProbeRegistryValue -Path 'HKLM:\SOFTWARE\Policies\Microsoft\Windows NT\Terminal Services\Client' -Name 'fClientDisableUDP'
    $data.disable_udp_transport = Get-ProbeRegistryValue -Path $client -Name 'DisableUDPTransport'
    $data.rdg_client_transport = Get-ProbeRegistryValue -Path $client -Name 'RDGClientTransport'
}
catch {
    Add-ProbeError -Step 'client registry' -ErrorRecord $_
}
try {
    $sids = @(Get-ChildItem -LiteralPath 'Registry::HKEY_USERS' | Where-Object { $_.PSChildName -match '^S-1-5-21-[\d-]+$' } | ForEach-Object { $_.PSChildName })
    $data.users = @(
        foreach ($sid in $sids) {
            $key = 'Registry::HKEY_USERS\' + $sid + '\Software\Microsoft\Terminal Server Client'
            $account = $null
            try {
                $account = (New-Object -TypeName 'System.Security.Principal.SecurityIdentifier' -ArgumentList $sid).Translate([System.Security.Principal.NTAccount]).Value
            }
            catch {
                $account = $null
            }
            $traceFile = Get-ProbeRegistryValue -Path $key -Name 'RDGClientTraceFile'
            $user = [ordered]@{
                sid             = $sid
                account         = $account
                rdg_trace       = Get-ProbeRegistryValue -Path $key -Name 'RDGClientTrace'
                rdg_trace_file  = $traceFile
                trace_exists    = $false
                trace_matches   = @()
            }
            if ($traceFile -and (Test-Path -LiteralPath $traceFile)) {
                $user.trace_exists = $true
                $user.trace_matches = @(
                    Get-Content -LiteralPath $traceFile -Tail $TraceLines |
                        Where-Object { $_ -match '0x904|0x7\b|HTTP/1\.[01] \d{3}|\b(400|401|403|404|407|500|502|503)\b' } |
                        Select-Object -Last 40 | ForEach-Object { $_.Trim() }
                )
            }
            $user
        }
    )
}
catch {
    Add-ProbeError -Step 'user hives' -ErrorRecord $_
}
if ($GatewayName) {
    $seen = [ordered]@{
        name         = $GatewayName
        port         = $GatewayPort
        connected    = $false
        policy_errors = $null
        chain_der    = @()
        chain_status = @()
        protocol     = $null
        error        = $null
    }
    $tcp = New-Object -TypeName 'System.Net.Sockets.TcpClient'
    try {
        if (-not $tcp.ConnectAsync($GatewayName, $GatewayPort).Wait($TimeoutMs)) {
            throw ('no TCP connection to ' + $GatewayName + ':' + $GatewayPort + ' within ' + $TimeoutMs + ' ms')
        }
        $seen.connected = $true
        $tcp.ReceiveTimeout = $TimeoutMs
        $tcp.SendTimeout = $TimeoutMs
        # The callback records what this machine's own trust decided, then accepts, so the chain is
        # captured even when it is not trusted. Nothing is sent after the handshake.
        $callback = {
            param($source, $certificate, $chain, $errors)
            $seen.policy_errors = [string]$errors
            $seen.chain_der = @(foreach ($element in $chain.ChainElements) { [Convert]::ToBase64String($element.Certificate.RawData) })
            $seen.chain_status = @(foreach ($status in $chain.ChainStatus) { [string]$status.Status })
            return $true
        }
        $validate = [System.Net.Security.RemoteCertificateValidationCallback]$callback
        $ssl = [System.Net.Security.SslStream]::new($tcp.GetStream(), $false, $validate)
        try {
            $ssl.AuthenticateAsClient($GatewayName)
            $seen.protocol = [string]$ssl.SslProtocol
        }
        finally {
            $ssl.Dispose()
        }
    }
    catch {
        $inner = $_.Exception
        while ($inner.InnerException) {
            $inner = $inner.InnerException
        }
        $seen.error = $inner.Message
    }
    finally {
        $tcp.Dispose()
    }
    $data.gateway_tls = $seen
}
try {
    $data.trusted_roots = @(Get-ChildItem -LiteralPath 'Cert:\LocalMachine\Root' | ForEach-Object { [string]$_.Thumbprint } | Select-Object -Unique)
}
catch {
    Add-ProbeError -Step 'trusted roots' -ErrorRecord $_
}

try {
    # Get-Process only lists; a process this account may not open still shows, without its path
    # (Path, Company and Product read as $null then, not as an error).
    $data.agents = @(
        Get-Process -Name $AgentProcesses -ErrorAction SilentlyContinue | Sort-Object -Property 'ProcessName', 'Id' | ForEach-Object {
            [ordered]@{
                process    = [string]$_.ProcessName
                process_id = [int]$_.Id
                path       = $(if ($_.Path) { [string]$_.Path } else { $null })
                company    = $(if ($_.Company) { [string]$_.Company } else { $null })
                product    = $(if ($_.Product) { [string]$_.Product } else { $null })
            }
        }
    )
}
catch {
    Add-ProbeError -Step 'TLS-intercepting agents' -ErrorRecord $_
}

Write-ProbeResult -Probe 'client' -Version 1 -Data $data
