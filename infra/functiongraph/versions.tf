terraform {
  # precondition blocks (also on data sources) and optional() need Terraform >= 1.3.
  required_version = ">= 1.3.0"

  required_providers {
    huaweicloud = {
      source = "huaweicloud/huaweicloud"
      # 1.62.1 added huaweicloud_fgs_function_trigger, 1.68.0 the
      # huaweicloud_eg_event_channels data source, 1.72.0 the APIG attributes
      # content_type and is_send_fg_body_base64 (huaweicloud_apig_api) used here.
      version = ">= 1.72.0"
    }
    archive = {
      source = "hashicorp/archive"
      # 2.4.x ignores the glob pattern in `excludes`; 2.5.0 honours it.
      version = ">= 2.5.0"
    }
  }
}

# Credentials come from the environment (HW_ACCESS_KEY / HW_SECRET_KEY, or a
# profile): never put them in *.tf or *.tfvars files.
provider "huaweicloud" {
  region = var.region
}
