output "function_urn" {
  description = "URN of the failjob-reaper function."
  value       = huaweicloud_fgs_function.reaper.urn
}

output "function_name" {
  description = "Name of the function (for `hcloud FunctionGraph`, the console and LTS log queries)."
  value       = huaweicloud_fgs_function.reaper.name
}

output "agency_name" {
  description = "IAM agency the function runs with."
  value       = local.agency_name
}

output "timer_trigger_id" {
  description = "ID of the timer trigger that starts the periodic sweep."
  value       = huaweicloud_fgs_function_trigger.sweep.id
}

output "eventgrid_channel_id" {
  description = "EventGrid channel to publish sdrs.job.failed / sdrs.failurejob.expired events to (null when disabled)."
  value       = one(huaweicloud_eg_custom_event_channel.reaper[*].id)
}

output "eventgrid_source_name" {
  description = "CloudEvents source publishers must use on the channel (null when disabled)."
  value       = one(huaweicloud_eg_custom_event_source.sdrs[*].name)
}

output "eventgrid_subscription_id" {
  description = "ID of the EventGrid subscription that targets the function (null when disabled)."
  value       = one(huaweicloud_eg_event_subscription.reaper[*].id)
}

output "api_base_url" {
  description = "Base URL of the manual HTTP API (null without apig_instance_id). Outside the RELEASE environment, send X-Stage: <apig_environment_name>."
  value       = local.apig_enabled ? "https://${data.huaweicloud_apig_groups.reaper[0].groups[0].sl_domain}" : null
}

output "api_urls" {
  description = "Full URL of each manual API (empty without apig_instance_id)."
  value = local.apig_enabled ? {
    for key, api in local.apis : key => "https://${data.huaweicloud_apig_groups.reaper[0].groups[0].sl_domain}${api.path}"
  } : {}
}

output "code_package_md5" {
  description = "MD5 of the deployed zip (changes whenever code, dependencies or policy change)."
  value       = data.archive_file.code.output_md5
}
