"""Sans-IO request routing: hostnames, matches and the route table of each port."""
