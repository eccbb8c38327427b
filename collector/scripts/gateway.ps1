# collector-probe: gateway v1
# Read-only. The RD Gateway's own view: Win32_TSGatewayServerSettings (the configured
# certificate hash, SSL bridging, channel binding, connection limit), that certificate with the
# chain this host builds and whether its private key is readable, what HTTP.sys actually binds
# on 0.0.0.0:443 and [::]:443 (read from the registry, so no display language is involved), and
# a summary of the connection (CAP) and resource (RAP) authorization policies, and the .NET
# trust level of the gateway's RPC-over-HTTP applications in IIS (/Rpc, /RpcWithCert), which
# must be Full (an IIS hardening baseline that lowers it breaks them). The trust level is the
# effective one IIS's configuration system reports (root web.config, applicationHost.config and
# the application's web.config merged); WebAdministration only reads it here.
param()
# collector: common

$ns = 'root\CIMv2\TerminalServices'
$data = [ordered]@{
    settings      = $null
    certificate   = $null
    http_bindings = @()
    caps          = @()
    raps          = @()
    iis_applications = $null
}
try {
    $s = Get-CimInstance -Namespace $ns -ClassName 'Win32_TSGatewayServerSettings'
    $data.settings = [ordered]@{
        cert_hash               = ConvertTo-ProbeHex -Bytes $s.CertHash
        ssl_bridging            = [int]$s.SslBridging
        enforce_channel_binding = [bool]$s.EnforceChannelBinding
        max_connections         = [int]$s.MaxConnections
        unlimited_connections   = [bool]$s.UnlimitedConnections
        central_cap_enabled     = [bool]$s.CentralCAPEnabled
        is_configured           = [bool]$s.IsConfigured
    }
}
catch {
    Add-ProbeError -Step 'Win32_TSGatewayServerSettings' -ErrorRecord $_
}
try {
    if ($data.settings -and $data.settings.cert_hash) {
        $certificate = Find-ProbeCertificate -Thumbprint $data.settings.cert_hash
        if ($certificate) {
            $data.certificate = ConvertTo-ProbeCertificate -Certificate $certificate
        }
    }
}
catch {
    Add-ProbeError -Step 'gateway certificate' -ErrorRecord $_
}
try {
    $base = 'HKLM:\SYSTEM\CurrentControlSet\Services\HTTP\Parameters\SslBindingInfo'
    $data.http_bindings = @(
        foreach ($endpoint in @('0.0.0.0:443', '[::]:443')) {
            $path = Join-Path -Path $base -ChildPath $endpoint
            if (Test-Path -LiteralPath $path) {
                [ordered]@{
                    endpoint   = $endpoint
                    cert_hash  = ConvertTo-ProbeHex -Bytes (Get-ProbeRegistryValue -Path $path -Name 'SslCertHash')
                    cert_store = Get-ProbeRegistryValue -Path $path -Name 'SslCertStoreName'
                }
            }
        }
    )
}
catch {
    Add-ProbeError -Step 'HTTP.sys bindings' -ErrorRecord $_
}
try {
    $data.caps = @(
        Get-CimInstance -Namespace $ns -ClassName 'Win32_TSGatewayConnectionAuthorizationPolicy' | ForEach-Object {
            [ordered]@{ name = [string]$_.Name; enabled = [bool]$_.Enabled; user_groups = [string]$_.UserGroups }
        }
    )
}
catch {
    Add-ProbeError -Step 'CAP' -ErrorRecord $_
}
try {
    $data.raps = @(
        Get-CimInstance -Namespace $ns -ClassName 'Win32_TSGatewayResourceAuthorizationPolicy' | ForEach-Object {
            [ordered]@{
                name           = [string]$_.Name
                enabled        = [bool]$_.Enabled
                user_groups    = [string]$_.UserGroups
                computer_group = [string]$_.ComputerGroup
                port_numbers   = [string]$_.PortNumbers
            }
        }
    )
}
catch {
    Add-ProbeError -Step 'RAP' -ErrorRecord $_
}

try {
    Import-Module -Name 'WebAdministration'
    $data.iis_applications = @(
        foreach ($name in @('Rpc', 'RpcWithCert')) {
            $entry = [ordered]@{ path = 'Default Web Site/' + $name; present = $false; physical_path = $null; trust_level = $null }
            $application = Get-WebApplication -Site 'Default Web Site' -Name $name
            if ($application) {
                $entry.present = $true
                $entry.physical_path = [string]$application.PhysicalPath
                $level = Get-WebConfigurationProperty -PSPath ('MACHINE/WEBROOT/APPHOST/Default Web Site/' + $name) -Filter 'system.web/trust' -Name 'level'
                if ($null -ne $level -and $level.PSObject.Properties['Value']) {
                    $level = $level.Value
                }
                if ($level) {
                    $entry.trust_level = [string]$level
                }
            }
            $entry
        }
    )
}
catch {
    Add-ProbeError -Step 'IIS trust levels' -ErrorRecord $_
}

Write-ProbeResult -Probe 'gateway' -Version 1 -Data $data
