cluster "c" { # WARNING: Two voters without a witness
}

role "db" {
  count = 2
}
