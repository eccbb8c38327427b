# collector-probe: events v1
# Read-only. Bounded reads of the Remote Desktop event logs: each query names a log and the
# event IDs wanted ('Log=ID,ID'), within the last SinceHours and at most MaxEvents per log.
# Events carry their structured data (EventData / UserData by name, e.g. the disconnect reason
# of RDPClient 1026), not only the message, which is localized.
param(
    [string[]]$Queries = @(),
    [int]$SinceHours = 24,
    [int]$MaxEvents = 200
)
# collector: common

$data = [ordered]@{ since_hours = $SinceHours; max_events = $MaxEvents; logs = @() }
$since = (Get-Date).AddHours(-$SinceHours)
$data.logs = @(
    foreach ($query in $Queries) {
        $log = $query.Substring(0, $query.LastIndexOf('='))
        $ids = @($query.Substring($query.LastIndexOf('=') + 1).Split(',') | ForEach-Object { [int]$_ })
        $entry = [ordered]@{ log = $log; ids = $ids; available = $true; truncated = $false; events = @() }
        try {
            $found = @(Get-WinEvent -FilterHashtable @{ LogName = $log; Id = $ids; StartTime = $since } -MaxEvents ($MaxEvents + 1))
            $entry.truncated = ($found.Count -gt $MaxEvents)
            $entry.events = @(
                foreach ($event in ($found | Select-Object -First $MaxEvents)) {
                    $fields = [ordered]@{}
                    $xml = [xml]$event.ToXml()
                    foreach ($item in @($xml.Event.EventData.Data)) {
                        if ($item -and $item.Name) {
                            $fields[[string]$item.Name] = [string]$item.InnerText
                        }
                    }
                    if ($xml.Event.UserData) {
                        foreach ($node in @($xml.Event.UserData.FirstChild.ChildNodes)) {
                            $fields[[string]$node.LocalName] = [string]$node.InnerText
                        }
                    }
                    $message = $null
                    try {
                        $message = [string]$event.Message
                        if ($message.Length -gt 300) {
                            $message = $message.Substring(0, 300)
                        }
                    }
                    catch {
                        $message = $null
                    }
                    [ordered]@{
                        id        = [int]$event.Id
                        provider  = [string]$event.ProviderName
                        time_utc  = ConvertTo-ProbeDate -Value $event.TimeCreated
                        level     = [string]$event.LevelDisplayName
                        record_id = [long]$event.RecordId
                        data      = $fields
                        message   = $message
                    }
                }
            )
        }
        catch {
            if ($_.FullyQualifiedErrorId -like 'NoMatchingEventsFound*') {
                $entry.events = @()
            }
            elseif ($_.FullyQualifiedErrorId -like 'NoMatchingLogsFound*') {
                $entry.available = $false
            }
            else {
                Add-ProbeError -Step ('Get-WinEvent ' + $log) -ErrorRecord $_
            }
        }
        $entry
    }
)

Write-ProbeResult -Probe 'events' -Version 1 -Data $data
