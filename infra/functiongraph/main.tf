# failjob-reaper on Huawei Cloud FunctionGraph.
#
# Run ./package.sh first: it fills build/package/ with the code, the
# dependencies built for the FunctionGraph runtime and policy.yaml. Terraform
# zips the directory and deploys it. See docs/deployment.md.
#
# The Huawei Cloud inputs and outputs live in their own files: cts.tf (CTS
# trigger), eventgrid.tf (cloud-service events for HC.SDRS, the outcome
# channel), smn.tf (the alert topic), iam.tf (the agency's custom role).

locals {
  sdrs_endpoint = var.sdrs_endpoint != "" ? trimsuffix(var.sdrs_endpoint, "/") : "https://sdrs.${var.region}.myhuaweicloud.com"
  package_dir   = abspath(startswith(var.package_dir, "/") ? var.package_dir : "${path.module}/${var.package_dir}")
  agency_name   = var.create_agency ? huaweicloud_identity_agency.function[0].name : var.agency_name

  # The function's environment. Every key is a setting of failjob_reaper.settings
  # (tests/test_infra.py checks it); empty values are left out so the
  # function's own defaults apply.
  user_data_all = {
    SDRS_ENDPOINT             = local.sdrs_endpoint
    SDRS_PROJECT_ID           = var.project_id
    RETENTION_POLICY_FILE     = var.policy_file_path
    RETENTION_DRY_RUN         = tostring(var.dry_run)
    SWEEP_DEADLINE            = tostring(var.sweep_deadline)
    EVENT_TYPE_JOB_FAILED     = var.event_type_job_failed
    EVENT_TYPE_EXPIRED        = var.event_type_expired
    OUTCOME_SOURCE            = var.outcome_source
    K_SINK                    = var.outcome_sink_url
    LOG_LEVEL                 = var.log_level
    EG_ENDPOINT               = local.eg_outcomes_endpoint
    EG_CHANNEL_ID             = local.eg_outcomes_channel_id
    SMN_ENDPOINT              = local.smn_endpoint
    SMN_TOPIC_URN             = local.smn_topic_urn
    SMN_MAX_MESSAGES_PER_HOUR = tostring(var.alerts_per_hour)
  }
  user_data = { for key, value in local.user_data_all : key => value if value != "" }

  # Secrets: encrypted at rest by FunctionGraph, hidden in the console.
  # SDRS credentials are NOT here: the function signs with the agency's
  # temporary credentials (context.getSecurityAccessKey() etc.).
  encrypted_user_data_all = {
    RETRY_API_TOKEN = var.retry_api_token
    STATE_URL       = local.state_url # dcs.tf
  }
  encrypted_user_data = { for key, value in local.encrypted_user_data_all : key => value if value != "" }

  # The timer's user_event: the payload of a sweep (same shape as sdrs.failurejob.sweep data).
  timer_user_event = jsonencode({
    dry_run = var.sweep_dry_run
  })

  code_key = "${var.function_name}/${data.archive_file.code.output_md5}.zip"
  code_url = "https://${var.code_bucket}.obs.${var.region}.myhuaweicloud.com/${local.code_key}"

  # Manual HTTP API through APIG: the paths on_http serves, one API each.
  apis = {
    retry   = { method = "POST", path = "/retry" }
    sweep   = { method = "POST", path = "/sweep" }
    healthz = { method = "GET", path = "/healthz" }
    openapi = { method = "GET", path = "/openapi.json" }
  }
  apig_enabled = var.apig_instance_id != ""
  apig_env_id  = var.apig_environment_name == "RELEASE" ? "DEFAULT_ENVIRONMENT_RELEASE_ID" : one(huaweicloud_apig_environment.reaper[*].id)
}

# ---------------------------------------------------------------------------
# Permissions: an agency FunctionGraph assumes to call SDRS
# ---------------------------------------------------------------------------

# delegated_service_name is marked "Internal" in the provider's schema (so not in
# its docs) at 1.72.0 and 1.97.1 alike, and still works: create sends it as the
# trusted domain, read sets it back for op_svc_* names, so plans stay empty.
# huaweicloud_identity_service_agency (since 1.63.0) is no replacement here: it is
# an IAM v5 agency ("incubating" docs), takes v5 identity policy names instead of
# the project roles below (SDRS Administrator, the custom role of iam.tf), and
# FunctionGraph's `agency` names a v3 agency trusted by op_svc_cff. See
# docs/deployment.md ("Provider versions").
resource "huaweicloud_identity_agency" "function" {
  count = var.create_agency ? 1 : 0

  name                   = var.agency_name
  description            = "failjob-reaper: lets FunctionGraph list and delete SDRS failed tasks"
  delegated_service_name = "op_svc_cff"

  project_role {
    project = var.region
    roles   = concat(var.agency_roles, local.custom_role_names)
  }
}

# ---------------------------------------------------------------------------
# Code package
# ---------------------------------------------------------------------------

# Read while planning (no depends_on): the zip exists before filebase64() reads it,
# so code_upload = "zip" works on a clean checkout. package.sh puts policy.yaml in.
data "archive_file" "code" {
  type        = "zip"
  source_dir  = local.package_dir
  output_path = "${path.module}/build/${var.function_name}.zip"
  excludes    = ["**/__pycache__/**", ".fgs-runtime"]

  lifecycle {
    precondition {
      condition     = fileexists("${local.package_dir}/main.py") && fileexists("${local.package_dir}/policy.yaml")
      error_message = "No code or policy in package_dir: run infra/functiongraph/package.sh first (POLICY_FILE=... to package your own policy)."
    }
    # Compiled wheels (pydantic-core, PyYAML, ...) only load on the Python they
    # were built for: package.sh records it in .fgs-runtime.
    precondition {
      condition     = try(trimspace(file("${local.package_dir}/.fgs-runtime")), "") == var.runtime
      error_message = "package_dir was not built for var.runtime: run infra/functiongraph/package.sh again (it builds for FGS_RUNTIME, TF_VAR_runtime, runtime in terraform.tfvars or the variable's default, in that order)."
    }
  }
}

resource "huaweicloud_obs_bucket" "code" {
  count = var.code_upload == "obs" ? 1 : 0

  bucket        = var.code_bucket
  acl           = "private"
  storage_class = "STANDARD"
  force_destroy = true

  lifecycle {
    precondition {
      condition     = var.code_bucket != ""
      error_message = "code_bucket is required when code_upload = \"obs\"."
    }
  }
}

resource "huaweicloud_obs_bucket_object" "code" {
  count = var.code_upload == "obs" ? 1 : 0

  bucket       = huaweicloud_obs_bucket.code[0].bucket
  key          = local.code_key
  source       = data.archive_file.code.output_path
  etag         = data.archive_file.code.output_md5
  content_type = "application/zip"
}

# ---------------------------------------------------------------------------
# The function (event function: handler(event, context) in main.py)
# ---------------------------------------------------------------------------

resource "huaweicloud_fgs_function" "reaper" {
  name        = var.function_name
  app         = var.function_app
  description = "failjob-reaper: deletes expired SDRS failed tasks under a retention policy"
  runtime     = var.runtime
  handler     = "main.handler"
  memory_size = var.memory_size
  timeout     = var.timeout
  agency      = local.agency_name
  vpc_id      = local.function_vpc_id # dcs.tf: to reach the DCS instance
  network_id  = local.function_network_id

  code_type     = var.code_upload
  code_url      = var.code_upload == "obs" ? local.code_url : null
  func_code     = var.code_upload == "zip" ? filebase64(data.archive_file.code.output_path) : null
  code_filename = var.code_upload == "zip" ? "${var.function_name}.zip" : null

  user_data           = jsonencode(local.user_data)
  encrypted_user_data = length(local.encrypted_user_data) > 0 ? jsonencode(local.encrypted_user_data) : null

  tags = var.tags

  depends_on = [huaweicloud_obs_bucket_object.code]

  lifecycle {
    precondition {
      condition     = var.sweep_deadline < var.timeout
      error_message = "sweep_deadline must be below timeout, or a sweep is killed before it reports sweep_completed."
    }
  }
}

# Retries for asynchronous invocations (EventGrid events, timer runs): the
# function raises on transient failures so that they are retried; deletes are
# idempotent, so a retry is safe.
resource "huaweicloud_fgs_async_invoke_configuration" "reaper" {
  function_urn                   = huaweicloud_fgs_function.reaper.urn
  max_async_event_age_in_seconds = var.async_event_max_age
  max_async_retry_attempts       = var.async_retry_attempts
  enable_async_status_log        = true

  dynamic "on_failure" {
    for_each = var.dead_letter_bucket != "" ? [var.dead_letter_bucket] : []
    content {
      destination = "OBS"
      param = jsonencode({
        bucket  = on_failure.value
        prefix  = "${var.function_name}/dead-letters"
        expires = 30
      })
    }
  }
}

# ---------------------------------------------------------------------------
# Timer trigger: the periodic sweep
# ---------------------------------------------------------------------------

resource "huaweicloud_fgs_function_trigger" "sweep" {
  function_urn = huaweicloud_fgs_function.reaper.urn
  type         = "TIMER"
  status       = "ACTIVE"
  event_data = jsonencode({
    name           = "${var.function_name}-sweep"
    schedule_type  = var.schedule_type
    schedule       = var.schedule
    sync_execution = false
    user_event     = local.timer_user_event
  })
}

# ---------------------------------------------------------------------------
# EventGrid: job-failed and expiry events -> the function
#
# This is what FunctionGraph's "EventGrid trigger" creates behind the console:
# a subscription on an EG channel with the function as its target. Managing it
# as an EG subscription keeps the type filter in Terraform.
# ---------------------------------------------------------------------------

resource "huaweicloud_eg_custom_event_channel" "reaper" {
  count = var.enable_eventgrid ? 1 : 0

  name        = var.eventgrid_channel_name
  description = "SDRS failed-task events for failjob-reaper"
}

resource "huaweicloud_eg_custom_event_source" "sdrs" {
  count = var.enable_eventgrid ? 1 : 0

  channel_id  = huaweicloud_eg_custom_event_channel.reaper[0].id
  name        = var.eventgrid_source_name
  type        = "APPLICATION"
  description = "Publishes sdrs.job.failed / sdrs.failurejob.expired events"
}

resource "huaweicloud_eg_event_subscription" "reaper" {
  count = var.enable_eventgrid ? 1 : 0

  channel_id  = huaweicloud_eg_custom_event_channel.reaper[0].id
  name        = "${var.function_name}-events"
  description = "job-failed and expiry events to failjob-reaper"

  sources {
    # The block's own UUID, unrelated to the event source's id (provider docs:
    # "no association with ... other resources"); fixed, so plans stay empty.
    id            = uuidv5("url", "${huaweicloud_fgs_function.reaper.urn}/events/sources/${huaweicloud_eg_custom_event_source.sdrs[0].name}")
    provider_type = "CUSTOM"
    name          = huaweicloud_eg_custom_event_source.sdrs[0].name
    filter_rule = jsonencode({
      source = [{ op = "StringIn", values = [huaweicloud_eg_custom_event_source.sdrs[0].name] }]
      type   = [{ op = "StringIn", values = [var.event_type_job_failed, var.event_type_expired] }]
    })
  }

  targets {
    # A stable UUID of our choosing (EG uses it only to tell targets apart).
    id            = uuidv5("url", huaweicloud_fgs_function.reaper.urn)
    provider_type = "OFFICIAL"
    name          = "HC.FunctionGraph"
    detail_name   = "detail"
    detail = jsonencode({
      urn         = huaweicloud_fgs_function.reaper.urn
      invoke_type = "ASYNC"
      agency_name = var.eventgrid_target_agency
    })
    # ORIGINAL: the function receives the CloudEvent itself (structured JSON).
    transform = jsonencode({
      type  = "ORIGINAL"
      value = ""
    })
  }
}

# ---------------------------------------------------------------------------
# APIG (optional): the manual HTTP API on a dedicated APIG instance.
# The function answers APIG events like on_http answers requests; /retry and
# /sweep check the bearer token (RETRY_API_TOKEN) themselves.
# ---------------------------------------------------------------------------

resource "huaweicloud_apig_group" "reaper" {
  count = local.apig_enabled ? 1 : 0

  instance_id = var.apig_instance_id
  name        = replace(var.function_name, "_", "-")
  description = "failjob-reaper manual API"
}

# RELEASE is the instance's built-in environment (no X-Stage header needed);
# any other name gets its own environment.
resource "huaweicloud_apig_environment" "reaper" {
  count = local.apig_enabled && var.apig_environment_name != "RELEASE" ? 1 : 0

  instance_id = var.apig_instance_id
  name        = var.apig_environment_name
  description = "failjob-reaper"
}

resource "huaweicloud_apig_api" "reaper" {
  for_each = local.apig_enabled ? local.apis : {}

  instance_id             = var.apig_instance_id
  group_id                = huaweicloud_apig_group.reaper[0].id
  type                    = "Public"
  name                    = "${var.function_name}-${each.key}"
  request_method          = each.value.method
  request_path            = each.value.path
  request_protocol        = "HTTPS"
  matching                = "Exact"
  security_authentication = "NONE"
  # JSON bodies reach the function as text (isBase64Encoded false); others stay base64.
  content_type           = each.value.method == "POST" ? "application/json" : null
  is_send_fg_body_base64 = each.value.method == "POST" ? false : null

  func_graph {
    function_urn    = huaweicloud_fgs_function.reaper.urn
    version         = "latest"
    timeout         = var.apig_backend_timeout_ms
    invocation_type = "sync"
  }
}

resource "huaweicloud_apig_api_publishment" "reaper" {
  for_each = huaweicloud_apig_api.reaper

  instance_id = var.apig_instance_id
  env_id      = local.apig_env_id
  api_id      = each.value.id
}

data "huaweicloud_apig_groups" "reaper" {
  count = local.apig_enabled ? 1 : 0

  instance_id = var.apig_instance_id
  group_id    = huaweicloud_apig_group.reaper[0].id
}
