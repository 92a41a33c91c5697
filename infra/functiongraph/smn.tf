# ---------------------------------------------------------------------------
# SMN: what needs a person (failjob_reaper/alerts.py): sweep digests (guard tripped,
# partial, failed deletions), permanent failures outside sweeps, the policy's
# notice window. The function publishes with the agency's credentials.
# ---------------------------------------------------------------------------

variable "enable_smn_alerts" {
  description = "Create an SMN topic for operator alerts and set SMN_ENDPOINT/SMN_TOPIC_URN."
  type        = bool
  default     = true
}

variable "smn_topic_name" {
  description = "Name of the alert topic (1-255 letters, digits, '-' or '_')."
  type        = string
  default     = "failjob-reaper-alerts"
}

variable "alert_subscriptions" {
  description = "Who receives the alerts: SMN subscriptions such as { protocol = \"email\", endpoint = \"ops@example.com\" } (email, sms, http, https, ...; email and SMS subscribers confirm first)."
  type = list(object({
    protocol = string
    endpoint = string
  }))
  default = []
}

variable "alerts_per_hour" {
  description = "SMN_MAX_MESSAGES_PER_HOUR: at most this many alert messages an hour (shared by every instance through the state store); a whole number from 1 to 1000."
  type        = number
  default     = 6

  # The setting's bounds (failjob_reaper/settings.py; tests/test_infra_bounds.py).
  validation {
    condition     = var.alerts_per_hour >= 1 && var.alerts_per_hour <= 1000 && floor(var.alerts_per_hour) == var.alerts_per_hour
    error_message = "alerts_per_hour must be a whole number from 1 to 1000 (SMN_MAX_MESSAGES_PER_HOUR)."
  }
}

locals {
  smn_endpoint  = var.enable_smn_alerts ? "https://smn.${var.region}.myhuaweicloud.com" : ""
  smn_topic_urn = var.enable_smn_alerts ? huaweicloud_smn_topic.alerts[0].topic_urn : ""
}

resource "huaweicloud_smn_topic" "alerts" {
  count = var.enable_smn_alerts ? 1 : 0

  name         = var.smn_topic_name
  display_name = "failjob-reaper"
  introduction = "failjob-reaper: SDRS failed-task cleanup that needs a person"
}

resource "huaweicloud_smn_subscription" "alerts" {
  for_each = var.enable_smn_alerts ? { for s in var.alert_subscriptions : "${s.protocol}:${s.endpoint}" => s } : {}

  topic_urn = huaweicloud_smn_topic.alerts[0].topic_urn
  protocol  = each.value.protocol
  endpoint  = each.value.endpoint
  remark    = "failjob-reaper alerts"
}

output "smn_topic_urn" {
  description = "URN of the alert topic (SMN_TOPIC_URN; null when disabled). Add subscriptions with alert_subscriptions or in the console."
  value       = one(huaweicloud_smn_topic.alerts[*].topic_urn)
}
