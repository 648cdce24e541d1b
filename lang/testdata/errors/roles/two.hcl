role "a" {
}

role "b" {
}
