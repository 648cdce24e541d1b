# The web role: serves the blog's static content, which comes from the
# configuration repository (the agent's checkout), with the built-in
# `hactl serve web`. A cluster uses it with
#   role "web" { source = "roles/web.hcl"  count = 2 }
# web-nginx.hcl is the same role with Debian's nginx: only the service
# resource and its config template differ.
role "web" {
  count = 2

  health "http" {
    type      = "http"
    port      = 8080
    path      = "/healthz"
    interval  = "2s"
    timeout   = "1s"
    threshold = 2
  }

  fencing {
    method = "provider"
    delay  = "2s"
  }

  resource "directory" "www" {
    path = "/srv/www"
    mode = "0755"
  }

  resource "file" "index" {
    path       = "/srv/www/index.html"
    source     = "content/index.html"
    mode       = "0644"
    depends_on = [directory.www]
  }

  resource "file" "post" {
    path       = "/srv/www/first-post.html"
    source     = "content/first-post.html"
    mode       = "0644"
    depends_on = [directory.www]
  }

  resource "file" "style" {
    path       = "/srv/www/style.css"
    source     = "content/style.css"
    mode       = "0644"
    depends_on = [directory.www]
  }

  resource "service" "web" {
    name       = "hactl-web"
    command    = ["hactl", "serve", "web", "--root", "${node.dir}/srv/www", "--listen", "${node.address}:8080"]
    depends_on = [file.index]
  }
}
