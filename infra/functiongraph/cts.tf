# ---------------------------------------------------------------------------
# CTS trigger: SDRS operations recorded by Cloud Trace Service -> the function
#
# SDRS publishes no "job failed" event; CTS records its operations and this
# trigger hands each trace to main.handler as {"cts": {...}}. The function
# decides every failed task of the trace's resource (failjob_reaper/cts.py).
# event_data as Huawei's own tools build it (huaweicloud/cloud-custodian,
# c7n_huaweicloud mu.py, CloudTraceServiceSource): a name and operations
# "<service>:<resource type>:<trace name>;<trace name>...". CTS allows at most
# 10 services x 10 operations per trigger. CTS must be enabled (a tracker) in
# the region.
# ---------------------------------------------------------------------------

variable "enable_cts_trigger" {
  description = "Create the CTS trigger that hands SDRS operation traces to the function (needs CTS enabled in the region). Either this or enable_eventgrid_cloudtrace is enough; both deliver each trace twice (harmless: deletes are idempotent)."
  type        = bool
  default     = true
}

variable "cts_operations" {
  description = "CTS trigger operations, \"SDRS:<resource type>:<trace name>;...\" (at most 10 services x 10 operations). The resource types and trace names are those of the CTS user guide's \"SDRS operations recorded by CTS\"; adjust them to what your region's CTS shows for SDRS."
  type        = list(string)
  default = [
    "SDRS:protectionGroup:createProtectionGroup;deleteProtectionGroup;startProtectionGroup;stopProtectionGroup;failoverProtectionGroup;reverseProtectionGroup;reprotectProtectionGroup;protectionGroupAction",
    "SDRS:protectedInstance:createProtectedInstance;deleteProtectedInstance;attachReplicationPair;detachReplicationPair;resizeProtectedInstance",
    "SDRS:replication:createReplicationPair;deleteReplicationPair;expandReplicationPair",
    "SDRS:drill:createDisasterRecoveryDrill;deleteDisasterRecoveryDrill",
  ]

  validation {
    condition     = length(var.cts_operations) <= 10 && alltrue([for op in var.cts_operations : can(regex("^[A-Za-z0-9]+:[A-Za-z0-9_]+:[A-Za-z0-9_]+(;[A-Za-z0-9_]+){0,9}$", op))])
    error_message = "cts_operations: at most 10 entries of \"SERVICE:resourceType:op1;op2\" with at most 10 operations each."
  }
}

resource "huaweicloud_fgs_function_trigger" "cts" {
  count = var.enable_cts_trigger ? 1 : 0

  function_urn = huaweicloud_fgs_function.reaper.urn
  type         = "CTS"
  status       = "ACTIVE"
  event_data = jsonencode({
    name       = replace("${var.function_name}_sdrs", "-", "_")
    operations = var.cts_operations
  })
}

output "cts_trigger_id" {
  description = "ID of the CTS trigger that hands SDRS traces to the function (null when disabled)."
  value       = one(huaweicloud_fgs_function_trigger.cts[*].id)
}
