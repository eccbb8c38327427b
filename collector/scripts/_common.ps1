# Shared by every probe: inserted at the common-helper line of each probe.
# One output helper, so every probe prints exactly one JSON envelope:
# {"probe": NAME, "version": N, "data": {...}, "errors": [{"step": ..., "message": ...}]}
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$script:ProbeErrors = New-Object -TypeName 'System.Collections.ArrayList'

function Add-ProbeError {
    param(
        [Parameter(Mandatory = $true)][string]$Step,
        [Parameter(Mandatory = $true)]$ErrorRecord
    )
    $message = [string]$ErrorRecord
    if ($ErrorRecord.Exception -and $ErrorRecord.Exception.Message) {
        $message = $ErrorRecord.Exception.Message
    }
    [void]$script:ProbeErrors.Add([ordered]@{ step = $Step; message = $message })
}

function ConvertTo-ProbeDate {
    param($Value)
    if ($null -eq $Value) {
        return $null
    }
    return ([datetime]$Value).ToUniversalTime().ToString('yyyy-MM-ddTHH:mm:ssZ')
}

function Write-ProbeResult {
    param(
        [Parameter(Mandatory = $true)][string]$Probe,
        [Parameter(Mandatory = $true)][int]$Version,
        [Parameter(Mandatory = $true)]$Data
    )
    $envelope = [ordered]@{
        probe   = $Probe
        version = $Version
        data    = $Data
        errors  = @($script:ProbeErrors.ToArray())
    }
    ConvertTo-Json -InputObject $envelope -Depth 10 -Compress
}

function Get-ProbeRegistryValue {
    # One registry value, or $null when the key or the value does not exist.
    param(
        [Parameter(Mandatory = $true)][string]$Path,
        [Parameter(Mandatory = $true)][string]$Name
    )
    $item = Get-ItemProperty -LiteralPath $Path -Name $Name -ErrorAction SilentlyContinue
    if ($null -eq $item) {
        return $null
    }
    return $item.$Name
}

function ConvertTo-ProbeHex {
    param($Bytes)
    if ($null -eq $Bytes) {
        return $null
    }
    return (@($Bytes) | ForEach-Object { ([byte]$_).ToString('X2') }) -join ''
}

function ConvertTo-ProbeCertificate {
    # A certificate with the chain this host builds for it (base64 DER, leaf first).
    param([Parameter(Mandatory = $true)]$Certificate)
    $chain = New-Object -TypeName 'System.Security.Cryptography.X509Certificates.X509Chain'
    $chain.ChainPolicy.RevocationMode = [System.Security.Cryptography.X509Certificates.X509RevocationMode]::NoCheck
    [void]$chain.Build($Certificate)
    $readable = $null
    if ($Certificate.HasPrivateKey) {
        try {
            $key = [System.Security.Cryptography.X509Certificates.RSACertificateExtensions]::GetRSAPrivateKey($Certificate)
            if ($null -eq $key) {
                $key = [System.Security.Cryptography.X509Certificates.ECDsaCertificateExtensions]::GetECDsaPrivateKey($Certificate)
            }
            $readable = ($null -ne $key)
        }
        catch {
            $readable = $false
        }
    }
    return [ordered]@{
        thumbprint           = [string]$Certificate.Thumbprint
        subject              = [string]$Certificate.Subject
        issuer               = [string]$Certificate.Issuer
        not_before           = ConvertTo-ProbeDate -Value $Certificate.NotBefore
        not_after            = ConvertTo-ProbeDate -Value $Certificate.NotAfter
        has_private_key      = [bool]$Certificate.HasPrivateKey
        private_key_readable = $readable
        chain_der            = @(foreach ($element in $chain.ChainElements) { [Convert]::ToBase64String($element.Certificate.RawData) })
        chain_status         = @(foreach ($status in $chain.ChainStatus) { [string]$status.Status })
    }
}

function Find-ProbeCertificate {
    # A certificate by thumbprint from the machine stores where RDS keeps them.
    param([string]$Thumbprint)
    if (-not $Thumbprint) {
        return $null
    }
    foreach ($store in @('Cert:\LocalMachine\My', 'Cert:\LocalMachine\Remote Desktop')) {
        $found = Get-ChildItem -LiteralPath $store -ErrorAction SilentlyContinue | Where-Object { $_.Thumbprint -eq $Thumbprint } | Select-Object -First 1
        if ($found) {
            return $found
        }
    }
    return $null
}
