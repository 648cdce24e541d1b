# The web role on Debian's nginx: the same shape as web.hcl (content, health
# check, fencing); only the package, the config template and the service
# differ. Use it on real machines (systemd): role "web" { source = "roles/web-nginx.hcl" }.
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

  resource "package" "nginx" {
    name = "nginx"
  }

  resource "directory" "www" {
    path = "/srv/www"
    mode = "0755"
  }

  resource "file" "index" {
    path       = "/srv/www/index.html"
    source     = "content/index.html"
    depends_on = [directory.www]
  }

  resource "file" "post" {
    path       = "/srv/www/first-post.html"
    source     = "content/first-post.html"
    depends_on = [directory.www]
  }

  resource "file" "style" {
    path       = "/srv/www/style.css"
    source     = "content/style.css"
    depends_on = [directory.www]
  }

  resource "template" "site" {
    path       = "/etc/nginx/sites-enabled/blog"
    source     = "roles/templates/nginx-site.conf.tmpl"
    vars       = { port = 8080, root = "/srv/www" }
    depends_on = [package.nginx]
    notify     = [service.nginx]
  }

  resource "service" "nginx" {
    name       = "nginx"
    enabled    = true
    depends_on = [package.nginx]
  }
}
