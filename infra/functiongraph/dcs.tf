# Shared state of every function instance (README "State and many instances"):
# a Huawei DCS for Redis instance in your VPC, or an existing Redis you name.
#
# FunctionGraph runs instances in parallel and recycles them; the outbox, the
# idempotency records, the delete journal and the sweep lease must outlive any
# one of them. With dcs_enabled the function gets VPC access (its agency then needs
# VPC permissions too: add "VPC Administrator" to agency_roles) and STATE_URL,
# password included, goes into
# encrypted_user_data. Without it and without state_url the function keeps its
# state in the process (memory://): fine for one instance only.

locals {
  dcs_url = var.dcs_enabled ? format("redis://:%s@%s:%d/0", urlencode(var.dcs_password),
  one(huaweicloud_dcs_instance.state[*].domain_name), var.dcs_port) : ""
  state_url = var.state_url != "" ? var.state_url : local.dcs_url

  # The function joins the VPC of the DCS instance to reach it.
  function_vpc_id     = var.dcs_enabled ? var.dcs_vpc_id : null
  function_network_id = var.dcs_enabled ? var.dcs_subnet_id : null
}

resource "huaweicloud_dcs_instance" "state" {
  count = var.dcs_enabled ? 1 : 0

  name               = "${var.function_name}-state"
  engine             = "Redis"
  engine_version     = var.dcs_engine_version
  capacity           = var.dcs_capacity
  flavor             = var.dcs_flavor
  availability_zones = var.dcs_availability_zones
  vpc_id             = var.dcs_vpc_id
  subnet_id          = var.dcs_subnet_id
  security_group_id  = var.dcs_security_group_id != "" ? var.dcs_security_group_id : null
  port               = var.dcs_port
  password           = var.dcs_password

  tags = var.tags

  lifecycle {
    precondition {
      condition     = var.dcs_vpc_id != "" && var.dcs_subnet_id != "" && length(var.dcs_availability_zones) > 0
      error_message = "dcs_enabled needs dcs_vpc_id, dcs_subnet_id and dcs_availability_zones."
    }
    precondition {
      condition     = length(var.dcs_password) >= 8
      error_message = "dcs_password must be 8-32 characters with three of: lower case, upper case, digits, special characters."
    }
  }
}

variable "state_url" {
  description = "STATE_URL of an existing Redis, DCS or Valkey (redis:// or rediss://, password included), passed encrypted. Empty: the DCS instance below when dcs_enabled, else memory:// (one instance)."
  type        = string
  default     = ""
  sensitive   = true

  validation {
    condition     = var.state_url == "" || can(regex("^rediss?://", var.state_url))
    error_message = "state_url must be empty or a redis:// or rediss:// URL."
  }
}

variable "dcs_enabled" {
  description = "Create a DCS for Redis instance for the shared state and give the function VPC access to it."
  type        = bool
  default     = false
}

variable "dcs_vpc_id" {
  description = "VPC of the DCS instance; the function joins it."
  type        = string
  default     = ""
}

variable "dcs_subnet_id" {
  description = "Subnet (network ID) of the DCS instance and of the function's VPC access."
  type        = string
  default     = ""
}

variable "dcs_security_group_id" {
  description = "Security group of the DCS instance (optional for Redis 4.0 and later)."
  type        = string
  default     = ""
}

variable "dcs_availability_zones" {
  description = "AZ codes of the DCS instance, e.g. [\"ap-southeast-3a\"] (a second one for a standby)."
  type        = list(string)
  default     = []
}

variable "dcs_engine_version" {
  description = "Redis engine version of the DCS instance."
  type        = string
  default     = "6.0"
}

variable "dcs_capacity" {
  description = "DCS capacity in GB; 0.125 holds far more than the function keeps (see bench/RESULTS.md, state)."
  type        = number
  default     = 0.125
}

variable "dcs_flavor" {
  description = "DCS flavor matching engine and capacity (data source huaweicloud_dcs_flavors), e.g. redis.single.xu1.tiny.128."
  type        = string
  default     = "redis.single.xu1.tiny.128"
}

variable "dcs_port" {
  description = "Port of the DCS instance."
  type        = number
  default     = 6379
}

variable "dcs_password" {
  description = "Password of the DCS instance (8-32 characters, three character kinds); ends up in the function's encrypted STATE_URL."
  type        = string
  default     = ""
  sensitive   = true
}
