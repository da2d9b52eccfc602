package libvirt

import (
	"context"
	"fmt"
	"path"

	"github.com/digitalocean/go-libvirt"
)

// pool is a storage pool whose volumes are files in a directory.
type pool struct {
	ref libvirt.StoragePool
	dir string
}

// path is where volume name is (or will be): domains name their kernel,
// initramfs and disks by path.
func (p *pool) path(name string) string { return path.Join(p.dir, name) }

// defaultPoolDir is where virt-install makes the pool "default".
const defaultPoolDir = "/var/lib/libvirt/images"

// openPool finds the named pool, starting it if it is inactive; the pool
// "default" is made when missing (a directory pool at
// /var/lib/libvirt/images, started and autostarted), as virt-install does.
func (c *conn) openPool(ctx context.Context, name string, report func(string, ...any)) (*pool, error) {
	ref, err := c.l.StoragePoolLookupByName(name)
	if isCode(err, libvirt.ErrNoStoragePool) {
		if name != "default" {
			return nil, userErrorf("config.pool", "storage pool %q does not exist on %s; name an existing directory pool (virsh pool-list --all) or use \"default\"", name, redactURI(c.cfg.URI))
		}
		if ref, err = c.makeDefaultPool(report); err != nil {
			return nil, c.wrap(ctx, err)
		}
	} else if err != nil {
		return nil, c.wrap(ctx, err)
	}
	active, err := c.l.StoragePoolIsActive(ref)
	if err != nil {
		return nil, c.wrap(ctx, err)
	}
	if active == 0 {
		report("starting storage pool %s", name)
		if err := c.l.StoragePoolCreate(ref, 0); err != nil && !isCode(err, libvirt.ErrOperationInvalid) {
			return nil, c.wrap(ctx, fmt.Errorf("starting storage pool %s: %w", name, err))
		}
	}
	x, err := c.l.StoragePoolGetXMLDesc(ref, 0)
	if err != nil {
		return nil, c.wrap(ctx, err)
	}
	px, err := parsePool(x)
	if err != nil {
		return nil, err
	}
	switch px.Type {
	case "dir", "fs", "netfs":
	default:
		return nil, userErrorf("config.pool", "storage pool %s is of type %s; k2 boots kernels from files, so it needs a directory pool (dir, fs or netfs)", name, px.Type)
	}
	if px.Target.Path == "" {
		return nil, fmt.Errorf("storage pool %s has no target path", name)
	}
	return &pool{ref: ref, dir: px.Target.Path}, nil
}

func (c *conn) makeDefaultPool(report func(string, ...any)) (libvirt.StoragePool, error) {
	report("making storage pool default at %s", defaultPoolDir)
	x := fmt.Sprintf("<pool type='dir'><name>default</name><target><path>%s</path></target></pool>", defaultPoolDir)
	ref, err := c.l.StoragePoolDefineXML(x, 0)
	if err != nil {
		// Another Create made it meanwhile.
		if ref, lerr := c.l.StoragePoolLookupByName("default"); lerr == nil {
			return ref, nil
		}
		return ref, fmt.Errorf("defining storage pool default: %w", err)
	}
	if err := c.l.StoragePoolBuild(ref, 0); err != nil && !notSupported(err) {
		return ref, fmt.Errorf("building storage pool default: %w", err)
	}
	if err := c.l.StoragePoolSetAutostart(ref, 1); err != nil && !notSupported(err) {
		return ref, fmt.Errorf("autostarting storage pool default: %w", err)
	}
	return ref, nil
}

// createVolume makes a raw volume of capacity bytes (sparse), or returns
// the one another Create made meanwhile.
func (c *conn) createVolume(p *pool, name string, capacity int64) (libvirt.StorageVol, error) {
	vol, err := c.l.StorageVolCreateXML(p.ref, volumeSpec(name, capacity), 0)
	if isCode(err, libvirt.ErrStorageVolExist) || (err != nil && isCode(err, libvirt.ErrOperationFailed, libvirt.ErrInternalError)) {
		if v, lerr := c.l.StorageVolLookupByName(p.ref, name); lerr == nil {
			return v, nil
		}
	}
	if err != nil {
		return vol, fmt.Errorf("creating volume %s in pool %s: %w", name, p.ref.Name, err)
	}
	return vol, nil
}

// deleteVolume removes volume name; a missing one is gone already.
func (c *conn) deleteVolume(p libvirt.StoragePool, name string) error {
	vol, err := c.l.StorageVolLookupByName(p, name)
	if isCode(err, libvirt.ErrNoStorageVol) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := c.l.StorageVolDelete(vol, 0); err != nil && !isCode(err, libvirt.ErrNoStorageVol) {
		return fmt.Errorf("deleting volume %s: %w", name, err)
	}
	return nil
}
