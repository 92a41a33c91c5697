# ---------------------------------------------------------------------------
# EventGrid, Huawei Cloud side (in: failjob_reaper/cts.py; out: the outcome publisher)
#
# In:  cloud-service events of SDRS on the official "default" channel
#      (source HC.SDRS or HC.BRS, type SDRS:CloudTrace:ApiCall|ConsoleAction|SystemAction,
#      data = the CTS trace) -> the function. Off by default: the CTS trigger
#      (cts.tf) already delivers the same traces.
# Out: a custom channel the function publishes its outcome CloudEvents to
#      (EG_ENDPOINT, EG_CHANNEL_ID; PutEvents with the agency's credentials).
# ---------------------------------------------------------------------------

variable "enable_eventgrid_cloudtrace" {
  description = "Subscribe the function to SDRS cloud-service events (HC.SDRS / HC.BRS CloudTrace) on the official EventGrid channel."
  type        = bool
  default     = false
}

variable "cloudtrace_event_types" {
  description = "EventGrid types of SDRS traces the subscription passes on (\"<service>:CloudTrace:<kind>\"; SDRS is also named BRS)."
  type        = list(string)
  default = [
    "SDRS:CloudTrace:ApiCall", "SDRS:CloudTrace:ConsoleAction", "SDRS:CloudTrace:SystemAction",
    "BRS:CloudTrace:ApiCall", "BRS:CloudTrace:ConsoleAction", "BRS:CloudTrace:SystemAction",
  ]
}

variable "enable_eventgrid_outcomes" {
  description = "Create a custom EventGrid channel and publish every outcome CloudEvent to it (EG_ENDPOINT/EG_CHANNEL_ID). Works beside outcome_sink_url: each outcome then goes to both."
  type        = bool
  default     = true
}

variable "eventgrid_outcome_channel_name" {
  description = "Name of the custom EventGrid channel that receives outcome events."
  type        = string
  default     = "failjob-reaper-outcomes"
}

locals {
  # The cloud-service sources SDRS traces arrive under (SDRS is also named BRS).
  cloudtrace_sources = ["HC.SDRS", "HC.BRS"]

  eg_endpoint            = "https://eg.${var.region}.myhuaweicloud.com"
  eg_outcomes_endpoint   = var.enable_eventgrid_outcomes ? local.eg_endpoint : ""
  eg_outcomes_channel_id = var.enable_eventgrid_outcomes ? huaweicloud_eg_custom_event_channel.outcomes[0].id : ""
}

data "huaweicloud_eg_event_channels" "official" {
  count = var.enable_eventgrid_cloudtrace ? 1 : 0

  provider_type = "OFFICIAL"
  name          = "default"
}

resource "huaweicloud_eg_event_subscription" "cloudtrace" {
  count = var.enable_eventgrid_cloudtrace ? 1 : 0

  channel_id  = data.huaweicloud_eg_event_channels.official[0].channels[0].id
  name        = "${var.function_name}-sdrs-traces"
  description = "SDRS operation traces to failjob-reaper"

  # One sources block names one source: one block per name SDRS publishes under
  # (failjob_reaper/cts.py CLOUD_SOURCES). The id is the block's own UUID (the
  # provider's docs: "no association with ... other resources"; a fixed one keeps
  # the set element stable between plans).
  dynamic "sources" {
    for_each = toset(local.cloudtrace_sources)
    content {
      id            = uuidv5("url", "${huaweicloud_fgs_function.reaper.urn}/cloudtrace/sources/${sources.value}")
      name          = sources.value
      provider_type = "OFFICIAL"
      filter_rule = jsonencode({
        source = [{ op = "StringIn", values = [sources.value] }]
        type   = [{ op = "StringIn", values = var.cloudtrace_event_types }]
      })
    }
  }

  targets {
    id            = uuidv5("url", "${huaweicloud_fgs_function.reaper.urn}/cloudtrace")
    provider_type = "OFFICIAL"
    name          = "HC.FunctionGraph"
    detail_name   = "detail"
    detail = jsonencode({
      urn         = huaweicloud_fgs_function.reaper.urn
      invoke_type = "ASYNC"
      agency_name = var.eventgrid_target_agency
    })
    transform = jsonencode({
      type  = "ORIGINAL"
      value = ""
    })
  }
}

resource "huaweicloud_eg_custom_event_channel" "outcomes" {
  count = var.enable_eventgrid_outcomes ? 1 : 0

  name        = var.eventgrid_outcome_channel_name
  description = "failjob-reaper outcome events (sdrs.failurejob.*)"
}

# Events published to a custom channel name a source registered on it: the
# outcomes' CloudEvents source (OUTCOME_SOURCE).
resource "huaweicloud_eg_custom_event_source" "outcomes" {
  count = var.enable_eventgrid_outcomes ? 1 : 0

  channel_id  = huaweicloud_eg_custom_event_channel.outcomes[0].id
  name        = var.outcome_source
  type        = "APPLICATION"
  description = "failjob-reaper outcomes"

  lifecycle {
    # The provider's rule for a custom event source name (tests/test_infra_bounds.py):
    # a URI source such as /failjob-reaper would plan and then fail at apply.
    precondition {
      condition     = can(regex("^[a-z0-9][a-z0-9_-]{0,127}$", var.outcome_source))
      error_message = "outcome_source is the outcome channel's event source name: 1-128 lowercase letters, digits, '-' or '_', starting with a letter or digit."
    }
  }
}

output "eventgrid_outcome_channel_id" {
  description = "EventGrid custom channel receiving the outcome events (EG_CHANNEL_ID; null when disabled). Subscribe consumers to it."
  value       = one(huaweicloud_eg_custom_event_channel.outcomes[*].id)
}

output "eventgrid_cloudtrace_subscription_id" {
  description = "ID of the subscription delivering SDRS cloud-service events to the function (null when disabled)."
  value       = one(huaweicloud_eg_event_subscription.cloudtrace[*].id)
}
