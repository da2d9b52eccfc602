package artifact

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
	"time"
)

// File is one regular file of a layer archive; Name uses forward slashes.
type File struct {
	Name string
	Data []byte
}

// epoch is the modification time of every archive entry.
var epoch = time.Unix(0, 0).UTC()

// tarGz packs files into a reproducible gzipped tar: entries sorted by name,
// parent directories added explicitly, fixed time, uid/gid 0, no user or
// group names, mode 0644 for files and 0755 for directories, and a gzip
// header with no name or time. The same files always give the same bytes.
func tarGz(files []File) ([]byte, error) {
	sorted := append([]File(nil), files...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	var buf bytes.Buffer
	gz, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	tw := tar.NewWriter(gz)
	dirs := map[string]bool{}
	var addDir func(d string) error
	addDir = func(d string) error {
		if d == "." || d == "/" || d == "" || dirs[d] {
			return nil
		}
		if err := addDir(path.Dir(d)); err != nil {
			return err
		}
		dirs[d] = true
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755,
			ModTime: epoch, Format: tar.FormatPAX})
	}
	for i, f := range sorted {
		if i > 0 && sorted[i-1].Name == f.Name {
			return nil, fmt.Errorf("duplicate archive entry %s", f.Name)
		}
		if err := addDir(path.Dir(f.Name)); err != nil {
			return nil, err
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: f.Name, Mode: 0o644, Size: int64(len(f.Data)),
			ModTime: epoch, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.Data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// untarGz returns the regular files of a gzipped tar, in archive order.
func untarGz(b []byte) ([]File, error) {
	gz, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("reading layer archive: %w", err)
	}
	tr := tar.NewReader(gz)
	var out []File
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading layer archive: %w", err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return nil, fmt.Errorf("reading layer archive: %w", err)
		}
		out = append(out, File{Name: strings.TrimPrefix(path.Clean(hdr.Name), "/"), Data: data})
	}
}

// readTree reads the regular files under dir in fsys, names relative to dir,
// skipping hidden files and directories. keep, if not nil, selects the
// entries to include; its argument is the relative name.
func readTree(fsys fs.FS, dir string, keep func(rel string, d fs.DirEntry) bool) ([]File, error) {
	var out []File
	err := fs.WalkDir(fsys, dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		rel := strings.TrimPrefix(p, dir+"/")
		if dir == "." {
			rel = p
		}
		if strings.HasPrefix(d.Name(), ".") || (keep != nil && !keep(rel, d)) {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		out = append(out, File{Name: rel, Data: data})
		return nil
	})
	return out, err
}
