package images

import (
	"fmt"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"k2.dev/k2/conformance/internal/rootfs"
	pauseexe "k2.dev/k2/provision/node/pause"
)

// user is an /etc/passwd entry (its group has the same id unless gid says).
type user struct {
	name     string
	uid, gid int
	home     string
}

var baseUsers = []user{
	{"root", 0, 0, "/root"}, {"daemon", 1, 1, "/usr/sbin"}, {"bin", 2, 2, "/bin"},
	{"sys", 3, 3, "/dev"}, {"mail", 8, 8, "/var/mail"}, {"www-data", 33, 33, "/var/www"},
	{"operator", 37, 37, "/var"}, {"nobody", 65534, 65534, "/nonexistent"},
}

var baseGroups = []string{
	"root:x:0:", "daemon:x:1:", "bin:x:2:", "sys:x:3:", "adm:x:4:", "tty:x:5:", "disk:x:6:",
	"lp:x:7:", "mail:x:8:", "kmem:x:9:", "wheel:x:10:root", "cdrom:x:11:", "dialout:x:18:",
	"floppy:x:19:", "video:x:28:", "audio:x:29:", "tape:x:32:", "www-data:x:33:",
	"operator:x:37:", "utmp:x:43:", "plugdev:x:46:", "staff:x:50:", "users:x:100:",
	"nogroup:x:65534:",
}

// base is what every image here starts from: /etc/passwd and /etc/group,
// name service switch, services and protocols from this machine, /tmp,
// /root, and with bb busybox with its applet links (at the paths busybox
// itself lists, as Alpine installs them; all in /bin if flatBin, as the
// busybox image has them).
func base(in Inputs, withBusybox, flatBin bool, users []user, groups []string) (*rootfs.FS, error) {
	fs := rootfs.New()
	var pw strings.Builder
	for _, u := range append(append([]user{}, baseUsers...), users...) {
		shell := "/bin/false"
		if u.uid == 0 {
			shell = "/bin/sh"
		}
		fmt.Fprintf(&pw, "%s:x:%d:%d:%s:%s:%s\n", u.name, u.uid, u.gid, u.name, u.home, shell)
	}
	fs.File("/etc/passwd", []byte(pw.String()), 0o644)
	fs.File("/etc/group", []byte(strings.Join(append(append([]string{}, baseGroups...), groups...), "\n")+"\n"), 0o644)
	fs.File("/etc/nsswitch.conf", []byte("passwd: files\ngroup: files\nhosts: files dns\nnetworks: files\nservices: files\nprotocols: files\n"), 0o644)
	for _, f := range []string{"/etc/services", "/etc/protocols"} {
		if err := fs.HostFile(f, f); err != nil {
			return nil, fmt.Errorf("%w (Debian: apt-get install netbase)", err)
		}
	}
	fs.Dir("/tmp", 0o1777)
	fs.Dir("/root", 0o700)
	fs.Dir("/var/tmp", 0o1777)
	if !withBusybox {
		return fs, nil
	}
	bb := in.Busybox
	if bb == "" {
		bb = "/bin/busybox"
	}
	if err := exists(bb, "Debian: apt-get install busybox-static"); err != nil {
		return nil, err
	}
	if err := fs.Executable("/bin/busybox", bb); err != nil {
		return nil, err
	}
	out, err := exec.Command(bb, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list-full: %w", bb, err)
	}
	for _, p := range strings.Fields(string(out)) {
		if flatBin {
			p = "bin/" + path.Base(p)
		}
		if path.Base(p) == "busybox" {
			continue // the binary itself, not a link to itself
		}
		fs.Symlink("/"+p, "/bin/busybox")
	}
	return fs, nil
}

// debianTool copies a Debian executable (and its libraries) to dst,
// replacing any busybox applet of the same name anywhere on PATH.
func debianTool(fs *rootfs.FS, dst, src, pkg string) error {
	if err := exists(src, "Debian: apt-get install "+pkg); err != nil {
		return err
	}
	for _, d := range strings.Split(defaultPath, ":") {
		if p := path.Join(d, path.Base(dst)); p != dst && fs.Has(p) {
			fs.Symlink(p, dst) // Alpine's packages replace busybox's links too
		}
	}
	return fs.Executable(dst, src)
}

// agnhostFS is the agnhost image's file system: busybox as on Alpine, the
// tools upstream installs with apk taken from Debian, agnhost itself, the
// porter certificate, and the users and groups upstream adds.
func agnhostFS(in Inputs) (*rootfs.FS, error) {
	fs, err := base(in, true, false,
		[]user{{"user-defined-in-image", 1000, 1000, "/home/user-defined-in-image"}},
		[]string{"user-defined-in-image:x:1000:", "group-defined-in-image:x:50000:user-defined-in-image"})
	if err != nil {
		return nil, err
	}
	tools := []struct{ dst, src, pkg string }{
		{"/usr/bin/curl", "/usr/bin/curl", "curl"},
		{"/usr/bin/nc", "/bin/nc.openbsd", "netcat-openbsd"},
		{"/usr/bin/dig", "/usr/bin/dig", "bind9-dnsutils"},
		{"/usr/bin/nslookup", "/usr/bin/nslookup", "bind9-dnsutils"},
		{"/usr/bin/host", "/usr/bin/host", "bind9-dnsutils"},
		{"/sbin/ip", "/usr/sbin/ip", "iproute2"},
		{"/sbin/ss", "/usr/bin/ss", "iproute2"},
		{"/usr/bin/socat", "/usr/bin/socat", "socat"},
		{"/bin/bash", "/usr/bin/bash", "bash"},
		{"/usr/bin/getent", "/usr/bin/getent", "libc-bin"},
	}
	for _, t := range tools {
		if err := debianTool(fs, t.dst, t.src, t.pkg); err != nil {
			return nil, err
		}
	}
	if err := fs.HostTree("/etc/iproute2", "/etc/iproute2"); err != nil {
		return nil, fmt.Errorf("%w (Debian: apt-get install iproute2)", err)
	}
	fs.File("/etc/os-release", []byte(`NAME="k2 conformance agnhost"
ID=k2-agnhost
ID_LIKE=alpine
PRETTY_NAME="Stand-in for upstream agnhost's Alpine Linux base: busybox with Debian tools"
`), 0o644)
	if err := fs.HostFile("/agnhost", bin(in, "agnhost")); err != nil {
		return nil, err
	}
	fs.Symlink("/agnhost-2", "agnhost")
	fs.Dir("/uploads", 0o755)
	porter := filepath.Join(in.K8sSrc, "test/images/agnhost/porter")
	for _, f := range []string{"localhost.crt", "localhost.key"} {
		if err := fs.HostFile("/"+f, filepath.Join(porter, f)); err != nil {
			return nil, err
		}
	}
	fs.Dir("/home/user-defined-in-image", 0o755)
	fs.Owned("/home/user-defined-in-image", 1000, 1000)
	return fs, nil
}

var agnhostPorts = map[string]struct{}{"80/tcp": {}, "8080/tcp": {}, "8081/tcp": {}, "9376/tcp": {}, "5000/tcp": {}}

func agnhost(in Inputs) (v1.Image, error) {
	fs, err := agnhostFS(in)
	if err != nil {
		return nil, err
	}
	return image(fs, v1.Config{Entrypoint: []string{"/agnhost"}, Cmd: []string{"pause"}, ExposedPorts: agnhostPorts})
}

// webPage is kitten or nautilus: agnhost serving a picture and data.json.
func webPage(in Inputs, name string) (v1.Image, error) {
	fs, err := agnhostFS(in)
	if err != nil {
		return nil, err
	}
	html := filepath.Join(in.K8sSrc, "test/images", name, "html")
	for _, f := range []string{name + ".jpg", "data.json"} {
		if err := fs.HostFile("/"+f, filepath.Join(html, f)); err != nil {
			return nil, err
		}
	}
	return image(fs, v1.Config{Entrypoint: []string{"/agnhost"}, Cmd: []string{"test-webserver"}, ExposedPorts: agnhostPorts})
}

func busybox(in Inputs) (v1.Image, error) {
	fs, err := base(in, true, true, nil, nil)
	if err != nil {
		return nil, err
	}
	fs.Dir("/home", 0o755)
	fs.Dir("/var/spool/mail", 0o755)
	return image(fs, v1.Config{Cmd: []string{"sh"}})
}

func nonroot(in Inputs) (v1.Image, error) {
	fs, err := base(in, true, false, nil, nil)
	if err != nil {
		return nil, err
	}
	return image(fs, v1.Config{User: "1234"})
}

func nonewprivs(in Inputs) (v1.Image, error) {
	fs, err := base(in, true, false, nil, nil)
	if err != nil {
		return nil, err
	}
	if err := fs.HostFile("/usr/local/bin/nnp", bin(in, "nnp")); err != nil {
		return nil, err
	}
	fs.Mode("/usr/local/bin/nnp", 0o4755) // set-user-ID, as upstream's chmod +s
	return image(fs, v1.Config{Cmd: []string{"nnp"}})
}

func sampleAPIServer(in Inputs) (v1.Image, error) {
	fs, err := base(in, true, false, nil, nil)
	if err != nil {
		return nil, err
	}
	if err := fs.HostFile("/sample-apiserver", bin(in, "sample-apiserver")); err != nil {
		return nil, err
	}
	return image(fs, v1.Config{Entrypoint: []string{"/sample-apiserver"}})
}

func etcd(in Inputs) (v1.Image, error) {
	fs, err := base(in, false, false, nil, nil)
	if err != nil {
		return nil, err
	}
	if err := fs.HostFile("/usr/local/bin/etcd", bin(in, "etcd")); err != nil {
		return nil, err
	}
	fs.Dir("/var/etcd", 0o700)
	fs.Dir("/var/lib/etcd", 0o700)
	return image(fs, v1.Config{Cmd: []string{"/usr/local/bin/etcd"}})
}

func pause(in Inputs) (v1.Image, error) {
	exe, err := pauseexe.Executable(runtime.GOARCH)
	if err != nil {
		return nil, err
	}
	fs := rootfs.New()
	fs.File("/pause", exe, 0o755)
	return image(fs, v1.Config{Entrypoint: []string{"/pause"}, User: "65535:65535"})
}

// glibcDNS stands in for debian:bookworm-slim with dnsutils: Debian's dash
// as /bin/sh, dig and getent, coreutils from busybox.
func glibcDNS(in Inputs) (v1.Image, error) {
	fs, err := base(in, true, false, nil, nil)
	if err != nil {
		return nil, err
	}
	for _, t := range []struct{ dst, src, pkg string }{
		{"/bin/sh", "/usr/bin/dash", "dash"},
		{"/usr/bin/dig", "/usr/bin/dig", "bind9-dnsutils"},
		{"/usr/bin/nslookup", "/usr/bin/nslookup", "bind9-dnsutils"},
		{"/usr/bin/host", "/usr/bin/host", "bind9-dnsutils"},
		{"/usr/bin/getent", "/usr/bin/getent", "libc-bin"},
		{"/bin/bash", "/usr/bin/bash", "bash"},
	} {
		if err := debianTool(fs, t.dst, t.src, t.pkg); err != nil {
			return nil, err
		}
	}
	if err := fs.HostFile("/etc/os-release", "/etc/os-release"); err != nil {
		return nil, err
	}
	return image(fs, v1.Config{Cmd: []string{"bash"}})
}

// nginx stands in for the official nginx Alpine image: Debian's nginx with
// a configuration like the official image's (port 80, pages under
// /usr/share/nginx/html, logs to the container's stdout and stderr, user
// nginx 101), on busybox.
func nginx(in Inputs) (v1.Image, error) {
	fs, err := base(in, true, false, []user{{"nginx", 101, 101, "/var/cache/nginx"}}, []string{"nginx:x:101:nginx"})
	if err != nil {
		return nil, err
	}
	if err := fs.Executable("/usr/sbin/nginx", filepath.Join(in.Nginx, "usr/sbin/nginx")); err != nil {
		return nil, err
	}
	if err := fs.HostFile("/etc/nginx/mime.types", filepath.Join(in.Nginx, "etc/nginx/mime.types")); err != nil {
		return nil, err
	}
	fs.File("/etc/nginx/nginx.conf", []byte(`user nginx;
worker_processes auto;
error_log /var/log/nginx/error.log notice;
pid /var/run/nginx.pid;
events {
    worker_connections 1024;
}
http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log /var/log/nginx/access.log;
    sendfile on;
    keepalive_timeout 65;
    include /etc/nginx/conf.d/*.conf;
}
`), 0o644)
	fs.File("/etc/nginx/conf.d/default.conf", []byte(`server {
    listen 80;
    listen [::]:80;
    server_name localhost;
    location / {
        root /usr/share/nginx/html;
        index index.html index.htm;
    }
    error_page 500 502 503 504 /50x.html;
    location = /50x.html {
        root /usr/share/nginx/html;
    }
}
`), 0o644)
	fs.File("/usr/share/nginx/html/index.html", []byte("<!DOCTYPE html>\n<html><head><title>Welcome to nginx!</title></head>\n<body><h1>Welcome to nginx!</h1></body></html>\n"), 0o644)
	fs.File("/usr/share/nginx/html/50x.html", []byte("<!DOCTYPE html>\n<html><head><title>Error</title></head>\n<body><h1>An error occurred.</h1></body></html>\n"), 0o644)
	fs.Symlink("/var/log/nginx/access.log", "/dev/stdout")
	fs.Symlink("/var/log/nginx/error.log", "/dev/stderr")
	fs.Dir("/var/lib/nginx", 0o755)
	fs.Dir("/var/cache/nginx", 0o755)
	fs.Dir("/var/run", 0o755)
	return image(fs, v1.Config{Cmd: []string{"nginx", "-g", "daemon off;"}, StopSignal: "SIGQUIT", ExposedPorts: map[string]struct{}{"80/tcp": {}}})
}
