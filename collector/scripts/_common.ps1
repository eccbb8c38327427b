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
