"""Sans-IO request routing: hostnames, matches and the per-port route table built from a snapshot."""
