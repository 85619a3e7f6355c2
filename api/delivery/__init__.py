"""Signed webhooks: a job's end POSTed to its callback_url, once, from whichever gateway claims it."""
