"""Failure alerts (issue 7): ``rules`` says who hears about which job, ``notifiers`` delivers one
notice to a webhook, a Slack-compatible webhook or by email, and ``alerter`` watches the jobs and
sends one alert per state change; ``history`` reads what was sent."""
