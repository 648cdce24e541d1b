cluster "c" {
}

role "escape" {
  source = "../../../../etc/passwd" # ERROR: Role source outside the configuration
}

role "absolute" {
  source = "/etc/passwd" # ERROR: Role source outside the configuration
}

role "missing" {
  source = "roles/missing.hcl" # ERROR: Cannot read role source
}

role "two" {
  source = "roles/two.hcl" # ERROR: Invalid role source
}

role "nested" {
  source = "roles/nested.hcl"
}

role "override" {
  source = "roles/base.hcl"
  count  = 0 # ERROR: Invalid count
  resource "file" "y" {
    depends_on = [file.x, file.z] # ERROR: Reference to undeclared resource
  }
}
