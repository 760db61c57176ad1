"""The capture agent: live interfaces in, batches of records to the alert service out."""
