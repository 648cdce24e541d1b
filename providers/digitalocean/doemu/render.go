package doemu

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

type obj = map[string]any

func (s *Server) regionJSON(slug string) obj {
	name := slug
	for _, r := range regionDefs {
		if r.slug == slug {
			name = r.name
		}
	}
	sizes := make([]string, 0, len(sizeDefs))
	for _, sz := range sizeDefs {
		sizes = append(sizes, sz.slug)
	}
	return obj{"slug": slug, "name": name, "sizes": sizes, "available": true,
		"features": []string{"backups", "ipv6", "metadata", "install_agent", "storage", "image_transfer"}}
}

func sizeJSON(sz sizeDef) obj {
	regions := make([]string, 0, len(regionDefs))
	for _, r := range regionDefs {
		regions = append(regions, r.slug)
	}
	return obj{"slug": sz.slug, "memory": sz.memory, "vcpus": sz.vcpus, "disk": sz.disk, "transfer": sz.transfer,
		"price_monthly": sz.monthly, "price_hourly": sz.hourly, "regions": regions, "available": true,
		"description": sz.desc, "disk_info": []obj{{"type": "local", "size": obj{"amount": sz.disk, "unit": "gib"}}}}
}

func imageJSON(im *image) obj {
	if im == nil {
		return nil
	}
	tags := im.tags
	if tags == nil {
		tags = []string{}
	}
	var slug any
	if im.slug != "" {
		slug = im.slug
	}
	return obj{"id": im.id, "name": im.name, "type": im.typ, "distribution": im.distribution, "slug": slug,
		"public": im.public, "regions": im.regions, "min_disk_size": im.minDisk, "size_gigabytes": im.sizeGB,
		"created_at": im.created.UTC().Format(tsLayout), "description": im.description, "tags": tags,
		"status": "available", "error_message": ""}
}

func snapshotJSON(im *image) obj {
	var tags any
	if len(im.tags) > 0 {
		tags = im.tags
	}
	return obj{"id": strconv.Itoa(im.id), "name": im.name, "resource_id": strconv.Itoa(im.resourceID),
		"resource_type": "droplet", "regions": im.regions, "min_disk_size": im.minDisk,
		"size_gigabytes": im.sizeGB, "created_at": im.created.UTC().Format(tsLayout), "tags": tags}
}

func (s *Server) dropletJSON(d *droplet, now time.Time) obj {
	status := d.shownStatus(now)
	v4, v6 := []obj{}, []obj{}
	if status != "new" && d.ipv4 != "" {
		v4 = append(v4,
			obj{"ip_address": d.ipv4, "netmask": "255.255.240.0", "gateway": gatewayOf(d.ipv4), "type": "public"},
			obj{"ip_address": d.priv, "netmask": "255.255.240.0", "gateway": "0.0.0.0", "type": "private"})
	}
	tags := append([]string{}, d.tags...)
	snaps := append([]int{}, d.snapshotIDs...)
	return obj{
		"id": d.id, "name": d.name, "memory": d.size.memory, "vcpus": d.size.vcpus, "disk": d.size.disk,
		"locked": false, "status": status, "created_at": d.created.UTC().Format(tsLayout),
		"features": []string{"droplet_agent", "private_networking"}, "backup_ids": []int{}, "snapshot_ids": snaps,
		"next_backup_window": nil, "image": imageJSON(d.image), "size": sizeJSON(d.size), "size_slug": d.size.slug,
		"volume_ids": []string{}, "networks": obj{"v4": v4, "v6": v6}, "region": s.regionJSON(d.region),
		"tags": tags, "vpc_uuid": d.vpc, "kernel": nil,
		"disk_info": []obj{{"type": "local", "size": obj{"amount": d.size.disk, "unit": "gib"}}},
	}
}

func gatewayOf(ip string) string {
	i := strings.LastIndexByte(ip, '.')
	if i < 0 {
		return ""
	}
	return ip[:i] + ".1"
}

func (s *Server) actionJSON(a *action) obj {
	var completed any
	if a.status != "in-progress" {
		completed = a.completed.UTC().Format(time.RFC3339)
	}
	var region any
	if a.region != "" {
		region = s.regionJSON(a.region)
	}
	rid := any(a.resourceID)
	if a.resourceType == "reserved_ip" || a.resourceType == "floating_ip" {
		rid = ipToInt(a.ip)
	}
	o := obj{"id": a.id, "status": a.status, "type": a.typ, "started_at": a.started.UTC().Format(time.RFC3339),
		"completed_at": completed, "resource_id": rid, "resource_type": a.resourceType, "region": region,
		"region_slug": a.region}
	if a.resourceType == "reserved_ip" {
		o["project_id"] = projectID
	}
	return o
}

const projectID = "746c6152-2fa2-11ed-92d3-27aaa54e4988"

func ipToInt(ip string) int64 {
	var n int64
	for _, p := range strings.Split(ip, ".") {
		v, _ := strconv.Atoi(p)
		n = n<<8 | int64(v)
	}
	return n
}

func (s *Server) ripJSON(r *reservedIP, now time.Time) obj {
	var d any
	if r.dropletID != 0 {
		if dd := s.st.droplets[r.dropletID]; dd != nil {
			d = s.dropletJSON(dd, now)
		}
	}
	return obj{"ip": r.ip, "region": s.regionJSON(r.region), "droplet": d, "locked": r.pending != nil,
		"project_id": projectID}
}

// page cuts items to the requested page and renders links and meta the way
// DO does: absolute URLs, only the links that make sense, "links":{} for a
// single page.
func page[T any](r *http.Request, items []T) ([]T, obj, obj) {
	q := r.URL.Query()
	pg, _ := strconv.Atoi(q.Get("page"))
	per, _ := strconv.Atoi(q.Get("per_page"))
	if pg < 1 {
		pg = 1
	}
	if per < 1 {
		per = 20
	}
	if per > 200 {
		per = 200
	}
	total := len(items)
	pages := (total + per - 1) / per
	lo, hi := (pg-1)*per, pg*per
	if lo > total {
		lo = total
	}
	if hi > total {
		hi = total
	}
	out := items[lo:hi]
	links := obj{}
	if pages > 1 {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		mk := func(n int) string {
			qq := url.Values{}
			for k, v := range q {
				qq[k] = v
			}
			qq.Set("page", strconv.Itoa(n))
			qq.Set("per_page", strconv.Itoa(per))
			return scheme + "://" + r.Host + r.URL.Path + "?" + qq.Encode()
		}
		p := obj{}
		if pg > 1 {
			p["first"] = mk(1)
			p["prev"] = mk(min(pg-1, pages))
		}
		if pg < pages {
			p["next"] = mk(pg + 1)
			p["last"] = mk(pages)
		}
		links["pages"] = p
	}
	return out, links, obj{"total": total}
}
