# ---------------------------------------------------------------------------
# The agency's custom role for the Huawei Cloud outputs: publish outcomes to
# the EventGrid channel (eg:channels:putEvents) and alerts to the SMN topic
# (smn:topic:publish). SDRS task-center rights come from var.agency_roles.
# ---------------------------------------------------------------------------

locals {
  output_actions = concat(
    var.enable_eventgrid_outcomes ? ["eg:channels:putEvents"] : [],
    var.enable_smn_alerts ? ["smn:topic:publish"] : [],
  )
  custom_role_names = var.create_agency && length(local.output_actions) > 0 ? [huaweicloud_identity_role.outputs[0].name] : []
}

resource "huaweicloud_identity_role" "outputs" {
  count = var.create_agency && length(local.output_actions) > 0 ? 1 : 0

  name        = "${var.function_name}-outputs"
  description = "failjob-reaper: publish outcomes (EventGrid) and alerts (SMN)"
  type        = "XA"
  policy = jsonencode({
    Version = "1.1"
    Statement = [{
      Effect = "Allow"
      Action = local.output_actions
    }]
  })
}
