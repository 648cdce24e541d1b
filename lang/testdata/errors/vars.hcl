variable "needed" { # ERROR: Missing variable value
  type = string
}

variable "port" { # ERROR: Invalid value for variable
  type    = number
  default = "eighty"
}

variable "ok" {
  default = 1
}

variable "ok" { # ERROR: Duplicate variable
  default = 2
}

locals {
  a = local.b # ERROR: Cycle in local values
  b = local.c
  c = local.a
  d = local.d # ERROR: Cycle in local values
  e = 1
}

locals {
  e = 2 # ERROR: Duplicate local value
  f = file("../../../../../etc/shadow") # ERROR: Error in function call
  g = node.name # ERROR: Unknown variable
}

cluster "c" {
  voters = local.e
}

role "web" {
}
