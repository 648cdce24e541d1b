cluster "c" {
  witness = "web-1"
}

role "web" {
  count = 2

  resource "file" "a" { # ERROR: Dependency cycle
    depends_on = [service.b]
    notify     = [file.c]
  }

  resource "service" "b" {
    subscribe = [file.c]
  }

  resource "file" "c" {
  }

  resource "exec" "self" { # ERROR: Dependency cycle
    depends_on = [exec.self]
  }

  resource "file" "d" {
    depends_on = [file.missing] # ERROR: Reference to undeclared resource
    notify     = ["file.a"]     # ERROR: Invalid resource reference
    content    = node.nmae      # ERROR: Unsupported attribute
    owner      = var.nobody     # ERROR: Unsupported attribute
  }

  resource "file" "e" {
    depends_on = file.a # ERROR: Invalid expression
  }
}
