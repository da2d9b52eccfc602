package aws

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"fmt"
	"io"
	"strings"

	"gopkg.in/yaml.v3"

	"k2.dev/k2/providers/sdk"
)

// maxUserData is EC2's limit on user-data, before base64.
const maxUserData = 16384

// Paths on a cloud-init machine.
const (
	machineConfigPath = "/etc/k2/machine.yaml"
	k2BinaryPath      = "/usr/local/bin/k2"
	fetchScriptPath   = "/usr/local/lib/k2/fetch-k2"
	unitPath          = "/etc/systemd/system/k2.service"
)

// isCloudInit reports whether b is already a document cloud-init runs
// (cloud-config, a script, an include list, MIME multipart, gzip).
func isCloudInit(b []byte) bool {
	for _, p := range []string{"#cloud-config", "#!", "#include", "#cloud-boothook", "Content-Type: multipart/"} {
		if bytes.HasPrefix(b, []byte(p)) {
			return true
		}
	}
	return false
}

// gunzip returns b decompressed if it is gzip, else b.
func gunzip(b []byte) []byte {
	if len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
		return b
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return b
	}
	out, err := io.ReadAll(io.LimitReader(zr, 1<<20))
	if err != nil {
		return b
	}
	return out
}

// machineConfigDoc is what the provider reads of a k2 machine config
// (docs/os.md): where the API will be served.
type machineConfigDoc struct {
	Kind         string `yaml:"kind"`
	Server       string `yaml:"server"`
	JoinURL      string `yaml:"joinURL"`
	ControlPlane *struct {
		Port     int `yaml:"port"`
		JoinPort int `yaml:"joinPort"`
	} `yaml:"controlPlane"`
}

// parseMachineConfig reads a k2 machine config (plain or gzip); ok is
// false for anything else.
func parseMachineConfig(b []byte) (doc machineConfigDoc, ok bool) {
	if err := yaml.Unmarshal(gunzip(b), &doc); err != nil || doc.Kind != "MachineConfig" {
		return doc, false
	}
	return doc, true
}

// userData is the instance user-data for machine m. With os k2 it is the
// bootstrap's user-data, the machine config `k2 init` reads from IMDS. With
// os cloud-init, a machine config is wrapped into a cloud-init document
// that writes it to /etc/k2/machine.yaml, fetches the k2 binary and runs
// `k2 init --config` under systemd; a document that already is cloud-init
// input passes unchanged.
func userData(cfg *config, m sdk.MachineRequest, b sdk.Bootstrap) ([]byte, error) {
	if len(b.UserData) == 0 {
		return nil, userErrorf("bootstrap.userData", "the bootstrap has no user-data: the aws provider boots machines from it")
	}
	out := b.UserData
	if cfg.OS == OSCloudInit && !isCloudInit(gunzip(b.UserData)) {
		arch := m.Arch
		if arch == "" {
			arch = "amd64"
		}
		var err error
		if out, err = cloudInit(cfg, arch, b.UserData); err != nil {
			return nil, err
		}
	}
	if len(out) > maxUserData {
		return nil, userErrorf("bootstrap.userData", "the user-data is %d bytes; EC2 takes at most %d", len(out), maxUserData)
	}
	return out, nil
}

// cloudConfig is the part of cloud-init's #cloud-config k2 writes.
type cloudConfig struct {
	WriteFiles []writeFile `yaml:"write_files"`
	RunCmd     [][]string  `yaml:"runcmd"`
}

type writeFile struct {
	Path        string `yaml:"path"`
	Permissions string `yaml:"permissions"`
	Owner       string `yaml:"owner,omitempty"`
	Encoding    string `yaml:"encoding,omitempty"`
	Content     string `yaml:"content"`
}

// cloudInit wraps a k2 machine config for a stock Linux image.
func cloudInit(cfg *config, arch string, machineConfig []byte) ([]byte, error) {
	fetch, err := fetchScript(cfg, arch)
	if err != nil {
		return nil, err
	}
	doc := cloudConfig{
		WriteFiles: []writeFile{
			{Path: machineConfigPath, Permissions: "0600", Owner: "root:root", Encoding: "b64",
				Content: base64.StdEncoding.EncodeToString(machineConfig)},
			{Path: fetchScriptPath, Permissions: "0755", Owner: "root:root", Content: fetch},
			{Path: unitPath, Permissions: "0644", Owner: "root:root", Content: unit},
		},
		RunCmd: [][]string{{"systemctl", "daemon-reload"}, {"systemctl", "enable", "--now", "k2.service"}},
	}
	body, err := yaml.Marshal(doc)
	if err != nil {
		return nil, err
	}
	return append([]byte("#cloud-config\n# Written by k2's aws provider: the machine config, how to fetch k2, and a unit running 'k2 init --config'.\n"), body...), nil
}

// unit runs k2 init on an already-booted machine and restarts it if it dies.
const unit = `[Unit]
Description=k2 machine (k2 init --config ` + machineConfigPath + `)
Wants=network-online.target
After=network-online.target

[Service]
ExecStartPre=` + fetchScriptPath + `
ExecStart=` + k2BinaryPath + ` init --config ` + machineConfigPath + `
Restart=always
RestartSec=5
KillMode=mixed
Delegate=yes
LimitNOFILE=1048576

[Install]
WantedBy=multi-user.target
`

// fetchScript is a POSIX shell script that downloads the k2 binary once:
// from k2_url, or as the first layer of the OCI artifact k2_image through
// the registry's HTTP API (anonymous pull, with a bearer token when the
// registry asks for one).
func fetchScript(cfg *config, arch string) (string, error) {
	head := "#!/bin/sh\n# Fetch the k2 binary once (k2's aws provider).\nset -eu\n[ -x " + k2BinaryPath + " ] && exit 0\nget() { if command -v curl >/dev/null; then curl -fsSL --retry 10 --retry-connrefused \"$@\"; else wget -qO- \"$@\"; fi; }\n"
	switch {
	case cfg.K2URL != "":
		u := strings.ReplaceAll(cfg.K2URL, "{arch}", arch)
		return head + fmt.Sprintf("get %s > %s.part\nchmod 0755 %s.part\nmv %s.part %s\n", shellQuote(u), k2BinaryPath, k2BinaryPath, k2BinaryPath, k2BinaryPath), nil
	case cfg.K2Image != "":
		host, repo, ref, err := splitRef(strings.ReplaceAll(cfg.K2Image, "{arch}", arch))
		if err != nil {
			return "", userErrorf("config.k2_image", "%v", err)
		}
		return head + fmt.Sprintf(`reg=%s repo=%s ref=%s
accept="application/vnd.oci.image.manifest.v1+json"
auth=""
code=$(curl -s -o /dev/null -w '%%{http_code}' -H "Accept: $accept" "https://$reg/v2/$repo/manifests/$ref")
if [ "$code" = 401 ]; then
  hdr=$(curl -sI -H "Accept: $accept" "https://$reg/v2/$repo/manifests/$ref" | tr -d '\r' | grep -i '^www-authenticate:')
  realm=$(echo "$hdr" | sed -n 's/.*realm="\([^"]*\)".*/\1/p')
  service=$(echo "$hdr" | sed -n 's/.*service="\([^"]*\)".*/\1/p')
  token=$(curl -fsSL "$realm?service=$service&scope=repository:$repo:pull" | sed -n 's/.*"\(access_\)\{0,1\}token":"\([^"]*\)".*/\2/p')
  auth="Authorization: Bearer $token"
fi
manifest=$(curl -fsSL --retry 10 -H "Accept: $accept" ${auth:+-H "$auth"} "https://$reg/v2/$repo/manifests/$ref")
digest=$(echo "$manifest" | tr -d ' \n' | sed -n 's/.*"layers":\[{[^}]*"digest":"\([^"]*\)".*/\1/p')
[ -n "$digest" ] || { echo "no layer in $reg/$repo:$ref" >&2; exit 1; }
curl -fsSL --retry 10 ${auth:+-H "$auth"} "https://$reg/v2/$repo/blobs/$digest" > %s.part
echo "${digest#sha256:}  %s.part" | sha256sum -c -
chmod 0755 %s.part
mv %s.part %s
`, shellQuote(host), shellQuote(repo), shellQuote(ref), k2BinaryPath, k2BinaryPath, k2BinaryPath, k2BinaryPath, k2BinaryPath), nil
	}
	return "", userErrorf("config.k2_url", "os cloud-init boots a stock image that has no k2: set k2_url (the k2 binary over http(s), {arch} for amd64/arm64) or k2_image (an OCI reference), or use os k2 with a k2 OS AMI")
}

// splitRef splits an OCI reference host/repo[:tag|@digest].
func splitRef(ref string) (host, repo, tag string, err error) {
	host, rest, ok := strings.Cut(ref, "/")
	if !ok || !strings.ContainsAny(host, ".:") || rest == "" {
		return "", "", "", fmt.Errorf("k2_image %q must name its registry host, as host/repository:tag", ref)
	}
	if r, d, ok := strings.Cut(rest, "@"); ok {
		return host, r, d, nil
	}
	if i := strings.LastIndexByte(rest, ':'); i > 0 {
		return host, rest[:i], rest[i+1:], nil
	}
	return host, rest, "latest", nil
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
