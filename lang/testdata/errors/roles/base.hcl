role "base" {
  count = 3
  resource "file" "x" {
  }
}
