role "n" {
  source = "two.hcl" # ERROR: Nested role source
}
