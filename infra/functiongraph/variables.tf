# ---------------------------------------------------------------------------
# Where and what
# ---------------------------------------------------------------------------

variable "region" {
  description = "Huawei Cloud region of the function, the agency's project role and the SDRS endpoint, e.g. ap-southeast-3."
  type        = string
  default     = "ap-southeast-3"
}

variable "project_id" {
  description = "SDRS project the function serves (SDRS_PROJECT_ID). Empty: the function falls back to RUNTIME_PROJECT_ID, the project FunctionGraph runs it in."
  type        = string
  default     = ""

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{0,64}$", var.project_id))
    error_message = "project_id must be empty or 1-64 letters, digits, '-' or '_'."
  }
}

variable "sdrs_endpoint" {
  description = "SDRS base URL (SDRS_ENDPOINT). Empty: https://sdrs.<region>.myhuaweicloud.com."
  type        = string
  default     = ""

  validation {
    condition     = var.sdrs_endpoint == "" || can(regex("^https://[^/?#]+/?$", var.sdrs_endpoint))
    error_message = "sdrs_endpoint must be an https:// base URL without path, query or fragment."
  }
}

# ---------------------------------------------------------------------------
# The function
# ---------------------------------------------------------------------------

variable "function_name" {
  description = "FunctionGraph function name; also the prefix of the triggers, the EventGrid subscription and the APIs."
  type        = string
  default     = "failjob-reaper"
}

variable "function_app" {
  description = "FunctionGraph application (function group) the function belongs to."
  type        = string
  default     = "default"
}

variable "runtime" {
  description = "FunctionGraph runtime of the zip package; package.sh builds the dependencies for it. FunctionGraph's Python runtimes are Python2.7, 3.6, 3.9, 3.10 and 3.12, and the code needs Python >= 3.11 (pyproject.toml requires-python), so Python3.12 is the only one that runs it."
  type        = string
  default     = "Python3.12"

  # tests/test_infra_bounds.py: exactly the FunctionGraph runtimes requires-python allows.
  validation {
    condition     = contains(["Python3.12"], var.runtime)
    error_message = "runtime must be Python3.12: of FunctionGraph's Python runtimes (2.7, 3.6, 3.9, 3.10, 3.12) only 3.12 meets the code's Python >= 3.11."
  }
}

variable "memory_size" {
  description = "Function memory in MB (a FunctionGraph size: 128, 256, 512, ...)."
  type        = number
  default     = 256
}

variable "timeout" {
  description = "Function timeout in seconds (3-900). Must exceed sweep_deadline so a sweep can report sweep_completed."
  type        = number
  default     = 300

  validation {
    condition     = var.timeout >= 3 && var.timeout <= 900
    error_message = "timeout must be between 3 and 900 seconds."
  }
}

variable "code_upload" {
  description = "How the zip reaches FunctionGraph: \"obs\" (uploaded to code_bucket, no size worries) or \"zip\" (inline base64 in the API call; only for small packages, the console limit is 10 MB)."
  type        = string
  default     = "obs"

  validation {
    condition     = contains(["obs", "zip"], var.code_upload)
    error_message = "code_upload must be \"obs\" or \"zip\"."
  }
}

variable "package_dir" {
  description = "Directory prepared by package.sh (code + dependencies for the FunctionGraph runtime). Relative paths are relative to this module."
  type        = string
  default     = "build/package"
}

variable "code_bucket" {
  description = "OBS bucket created for the code package when code_upload = \"obs\" (globally unique name)."
  type        = string
  default     = ""
}

# ---------------------------------------------------------------------------
# Permissions
# ---------------------------------------------------------------------------

variable "create_agency" {
  description = "Create the IAM agency (needs IAM admin rights). false: use an existing agency named agency_name."
  type        = bool
  default     = true
}

variable "agency_name" {
  description = "IAM agency delegating to FunctionGraph (op_svc_cff); its temporary credentials sign the SDRS calls."
  type        = string
  default     = "failjob-reaper-sdrs"
}

variable "agency_roles" {
  description = "Project-level roles granted to the agency in var.region. The SDRS system role is broad; replace it with a custom role allowing only the task-center list/delete actions when your IAM setup allows."
  type        = list(string)
  default     = ["SDRS Administrator"]
}

# ---------------------------------------------------------------------------
# Function configuration (user_data / encrypted_user_data: the environment)
# ---------------------------------------------------------------------------

variable "policy_file_path" {
  description = "RETENTION_POLICY_FILE as the function sees it: the code is unpacked in RUNTIME_CODE_ROOT (/opt/function/code)."
  type        = string
  default     = "/opt/function/code/policy.yaml"
}

variable "dry_run" {
  description = "RETENTION_DRY_RUN: decide and report, never delete. Start with true on a new project."
  type        = bool
  default     = false
}

variable "sweep_deadline" {
  description = "SWEEP_DEADLINE in seconds: a sweep stops starting deletes after it. Must be below timeout."
  type        = number
  default     = 240

  # The setting's bound (above 0); the function's precondition keeps it below timeout.
  validation {
    condition     = var.sweep_deadline > 0 && var.sweep_deadline <= 86400
    error_message = "sweep_deadline must be above 0 and at most 86400 (SWEEP_DEADLINE), and below timeout."
  }
}

variable "log_level" {
  description = "LOG_LEVEL: DEBUG, INFO, WARNING or ERROR."
  type        = string
  default     = "INFO"

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR"], var.log_level)
    error_message = "log_level must be DEBUG, INFO, WARNING or ERROR."
  }
}

variable "outcome_source" {
  description = "OUTCOME_SOURCE: the CloudEvents source attribute of outcome events. With enable_eventgrid_outcomes it is also the name of the outcome channel's custom event source: 1-128 lowercase letters, digits, '-' or '_', starting with a letter or digit (so not a URI such as /failjob-reaper)."
  type        = string
  default     = "failjob-reaper"
}

variable "outcome_sink_url" {
  description = "K_SINK: http(s) URL that receives outcome CloudEvents (binary mode, unauthenticated POST). Empty: outcomes are logged to stdout (LTS) as JSON lines."
  type        = string
  default     = ""
}

variable "retry_api_token" {
  description = "RETRY_API_TOKEN (encrypted_user_data): bearer token for /retry and /sweep through the APIG API. Empty: those calls are refused."
  type        = string
  default     = ""
  sensitive   = true
}

variable "event_type_job_failed" {
  description = "EVENT_TYPE_JOB_FAILED: CloudEvents type of job-failed events (EventGrid filter and function setting)."
  type        = string
  default     = "sdrs.job.failed"
}

variable "event_type_expired" {
  description = "EVENT_TYPE_EXPIRED: CloudEvents type of expiry events (EventGrid filter and function setting)."
  type        = string
  default     = "sdrs.failurejob.expired"
}

# ---------------------------------------------------------------------------
# Triggers
# ---------------------------------------------------------------------------

variable "schedule_type" {
  description = "Timer trigger schedule type: Rate (e.g. 1h, 30m, 1d) or Cron (FunctionGraph cron syntax)."
  type        = string
  default     = "Rate"

  validation {
    condition     = contains(["Rate", "Cron"], var.schedule_type)
    error_message = "schedule_type must be Rate or Cron."
  }
}

variable "schedule" {
  description = "Timer trigger schedule of the sweep (hourly by default)."
  type        = string
  default     = "1h"
}

variable "sweep_dry_run" {
  description = "dry_run flag in the timer's user_event: true makes scheduled sweeps report would_delete only."
  type        = bool
  default     = false
}

variable "async_retry_attempts" {
  description = "FunctionGraph retries of a failed asynchronous invocation (EventGrid events, timer runs)."
  type        = number
  default     = 3
}

variable "async_event_max_age" {
  description = "Seconds an asynchronous event may wait and be retried before it is dropped (or sent to dead_letter_bucket)."
  type        = number
  default     = 3600
}

variable "dead_letter_bucket" {
  description = "Existing OBS bucket that receives asynchronous invocations that failed every retry (needs OBS rights in agency_roles). Empty: none."
  type        = string
  default     = ""
}

variable "enable_eventgrid" {
  description = "Create the EventGrid channel, event source and subscription that deliver job-failed and expiry events to the function."
  type        = bool
  default     = true
}

variable "eventgrid_channel_name" {
  description = "EventGrid custom channel that SDRS failure events are published to (not \"default\")."
  type        = string
  default     = "failjob-reaper"
}

variable "eventgrid_source_name" {
  description = "EventGrid custom event source name; publishers set it as the CloudEvents source. 1-128 lowercase letters, digits, '-' or '_', starting with a letter or digit."
  type        = string
  default     = "sdrs-task-center"

  # The provider's rule for huaweicloud_eg_custom_event_source.name (tests/test_infra_bounds.py).
  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9_-]{0,127}$", var.eventgrid_source_name))
    error_message = "eventgrid_source_name must be 1-128 lowercase letters, digits, '-' or '_', starting with a letter or digit."
  }
}

variable "eventgrid_target_agency" {
  description = "Agency EventGrid uses to invoke FunctionGraph targets (EG_TARGET_AGENCY is created by the EventGrid console on first use)."
  type        = string
  default     = "EG_TARGET_AGENCY"
}

variable "apig_instance_id" {
  description = "Dedicated APIG instance for the manual HTTP API (/retry, /sweep, /healthz, /openapi.json). Empty: no API is created."
  type        = string
  default     = ""
}

variable "apig_environment_name" {
  description = "APIG environment the APIs are published to. RELEASE (built in) needs no X-Stage header; any other name (3-64 letters, digits, underscores) is created and must be sent as X-Stage."
  type        = string
  default     = "RELEASE"
}

variable "apig_backend_timeout_ms" {
  description = "APIG backend timeout in ms (APIG default maximum 60000; a manual /sweep can take longer and then answers 504 while the sweep runs on)."
  type        = number
  default     = 60000
}

variable "tags" {
  description = "Tags set on the function."
  type        = map(string)
  default     = {}
}
