# The smallest useful configuration: one role of one node on this machine.
cluster "tiny" {}

role "web" {}
