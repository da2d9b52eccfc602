package ec2fake

import (
	"strings"
	"time"
)

type image struct {
	ID, Name, Description, Arch, Owner, State string
	Public                                    bool
	Boot                                      string // BootK2OS or BootCloudInit
	RootDevice                                string
	Snapshot                                  string
	BootMode, ImdsSupport                     string
	Ena                                       bool
	Created                                   time.Time
}

type snapshot struct {
	ID     string
	SizeGB int
	Task   string
}

type importTask struct {
	ID, Description, Bucket, Key, Format, Token string
	Status, Message, Snapshot                   string
	Size                                        int64
	Started                                     time.Time
}

func (s *Server) visibleImage(id string, now time.Time) (*image, *apiError) {
	if !strings.HasPrefix(id, "ami-") {
		return nil, badRequest("InvalidAMIID.Malformed", "Invalid id: \"%s\" (expecting \"ami-...\")", id)
	}
	img, ok := s.images[id]
	if !ok || !s.visible(id, now) {
		return nil, badRequest("InvalidAMIID.NotFound", "The image id '[%s]' does not exist", id)
	}
	if img.State != "available" {
		return nil, badRequest("InvalidAMIID.Unavailable", "The image id '[%s]' is not available", id)
	}
	return img, nil
}

func (s *Server) describeImages(p *params, now time.Time) (any, *apiError) {
	ids, owners := p.strs("ImageId"), p.strs("Owner")
	var cands []*image
	for _, id := range ids {
		if !strings.HasPrefix(id, "ami-") {
			return nil, badRequest("InvalidAMIID.Malformed", "Invalid id: \"%s\" (expecting \"ami-...\")", id)
		}
		img, ok := s.images[id]
		if !ok || !s.visible(id, now) {
			return nil, badRequest("InvalidAMIID.NotFound", "The image id '[%s]' does not exist", id)
		}
		cands = append(cands, img)
	}
	if len(ids) == 0 {
		for id, img := range s.images {
			if s.visible(id, now) && (img.Public || img.Owner == s.o.AccountID) {
				cands = append(cands, img)
			}
		}
	}
	sortByID(cands, func(i *image) string { return i.ID })
	type xmlImage struct {
		ImageID      string `xml:"imageId"`
		Location     string `xml:"imageLocation"`
		State        string `xml:"imageState"`
		OwnerID      string `xml:"imageOwnerId"`
		CreationDate string `xml:"creationDate"`
		Public       bool   `xml:"isPublic"`
		Arch         string `xml:"architecture"`
		ImageType    string `xml:"imageType"`
		Name         string `xml:"name"`
		Description  string `xml:"description,omitempty"`
		RootType     string `xml:"rootDeviceType"`
		RootName     string `xml:"rootDeviceName"`
		BlockDevices []struct {
			DeviceName string `xml:"deviceName"`
			SnapshotID string `xml:"ebs>snapshotId,omitempty"`
		} `xml:"blockDeviceMapping>item"`
		Virtualization string   `xml:"virtualizationType"`
		Hypervisor     string   `xml:"hypervisor"`
		Ena            bool     `xml:"enaSupport"`
		BootMode       string   `xml:"bootMode,omitempty"`
		ImdsSupport    string   `xml:"imdsSupport,omitempty"`
		Tags           []xmlTag `xml:"tagSet>item,omitempty"`
	}
	out := struct {
		Images []xmlImage `xml:"imagesSet>item"`
	}{}
	fs := p.filters()
	for _, img := range cands {
		owner := img.Owner
		if len(owners) > 0 && !contains(owners, owner) && !(contains(owners, "self") && owner == s.o.AccountID) &&
			!(contains(owners, "amazon") && owner != s.o.AccountID) {
			continue
		}
		field := func(n string) []string {
			if t, ok := tagFields(s.tags[img.ID], n); ok {
				return t
			}
			switch n {
			case "image-id":
				return []string{img.ID}
			case "name":
				return []string{img.Name}
			case "architecture":
				return []string{img.Arch}
			case "state":
				return []string{img.State}
			case "owner-id":
				return []string{img.Owner}
			}
			return nil
		}
		if !matches(fs, field) {
			continue
		}
		x := xmlImage{ImageID: img.ID, Location: img.Owner + "/" + img.Name, State: img.State, OwnerID: img.Owner,
			CreationDate: img.Created.UTC().Format("2006-01-02T15:04:05.000Z"), Public: img.Public, Arch: img.Arch, ImageType: "machine",
			Name: img.Name, Description: img.Description, RootType: "ebs", RootName: img.RootDevice, Virtualization: "hvm",
			Hypervisor: "xen", Ena: img.Ena, BootMode: img.BootMode, ImdsSupport: img.ImdsSupport, Tags: tagSet(s.tags[img.ID])}
		x.BlockDevices = append(x.BlockDevices, struct {
			DeviceName string `xml:"deviceName"`
			SnapshotID string `xml:"ebs>snapshotId,omitempty"`
		}{img.RootDevice, img.Snapshot})
		out.Images = append(out.Images, x)
	}
	return out, nil
}

type xmlTaskDetail struct {
	Description   string  `xml:"description,omitempty"`
	DiskImageSize float64 `xml:"diskImageSize,omitempty"`
	Format        string  `xml:"format"`
	Progress      string  `xml:"progress,omitempty"`
	SnapshotID    string  `xml:"snapshotId,omitempty"`
	Status        string  `xml:"status"`
	StatusMessage string  `xml:"statusMessage,omitempty"`
	Bucket        string  `xml:"userBucket>s3Bucket"`
	Key           string  `xml:"userBucket>s3Key"`
}

func (t *importTask) detail() xmlTaskDetail {
	d := xmlTaskDetail{Description: t.Description, Format: t.Format, Status: t.Status, StatusMessage: t.Message,
		SnapshotID: t.Snapshot, Bucket: t.Bucket, Key: t.Key}
	if t.Status == "active" {
		d.Progress = "42"
	}
	if t.Status == "completed" {
		d.DiskImageSize = float64(t.Size)
	}
	return d
}

func (s *Server) importSnapshot(p *params, now time.Time) (any, *apiError) {
	token := p.str("ClientToken")
	var t *importTask
	for _, old := range s.tasks {
		if token != "" && old.Token == token {
			t = old
		}
	}
	if t == nil {
		format := strings.ToUpper(p.str("DiskContainer.Format"))
		switch format {
		case "RAW", "VHD", "VMDK":
		default:
			return nil, badRequest("InvalidParameter", "Invalid disk format %q: use RAW, VHD or VMDK", p.str("DiskContainer.Format"))
		}
		bucket, key := p.str("DiskContainer.UserBucket.S3Bucket"), p.str("DiskContainer.UserBucket.S3Key")
		if bucket == "" || key == "" {
			return nil, badRequest("InvalidParameter", "DiskContainer.UserBucket.S3Bucket and S3Key are required")
		}
		t = &importTask{ID: "import-" + s.newID("snap"), Description: p.str("Description"), Bucket: bucket, Key: key,
			Format: format, Token: token, Status: "active", Message: "pending", Started: now}
		s.tasks[t.ID] = t
		s.born(t.ID, now, p.tagSpecs("import-snapshot-task"))
	}
	return struct {
		Description string        `xml:"description,omitempty"`
		TaskID      string        `xml:"importTaskId"`
		Detail      xmlTaskDetail `xml:"snapshotTaskDetail"`
		Tags        []xmlTag      `xml:"tagSet>item,omitempty"`
	}{t.Description, t.ID, t.detail(), tagSet(s.tags[t.ID])}, nil
}

// finishImport completes (or fails) a task as EC2's import service would:
// the object must exist and, for RAW, be a disk image (whole sectors, an
// MBR or GPT protective MBR signature). Called with s.mu held.
func (s *Server) finishImport(t *importTask) {
	obj := s.buckets[t.Bucket][t.Key]
	switch {
	case obj == nil:
		t.Status, t.Message = "deleted", "ClientError: Unable to access the S3 object s3://"+t.Bucket+"/"+t.Key
		return
	case t.Format == "RAW" && (obj.Size%512 != 0 || len(obj.Head) < 512 || obj.Head[510] != 0x55 || obj.Head[511] != 0xAA):
		t.Status, t.Message = "deleted", "ClientError: Disk validation failed [Unsupported specified file format]"
		return
	}
	snap := &snapshot{ID: s.newID("snap"), SizeGB: int((obj.Size + 1<<30 - 1) >> 30), Task: t.ID}
	s.snapshots[snap.ID] = snap
	s.created[snap.ID] = t.Started
	t.Status, t.Message, t.Snapshot, t.Size = "completed", "", snap.ID, obj.Size
}

func (s *Server) describeImportTasks(p *params, now time.Time) (any, *apiError) {
	type xmlTask struct {
		Description string        `xml:"description,omitempty"`
		TaskID      string        `xml:"importTaskId"`
		Detail      xmlTaskDetail `xml:"snapshotTaskDetail"`
		Tags        []xmlTag      `xml:"tagSet>item,omitempty"`
	}
	out := struct {
		Tasks []xmlTask `xml:"importSnapshotTaskSet>item"`
	}{}
	ids := p.strs("ImportTaskId")
	if len(ids) == 0 {
		for id := range s.tasks {
			ids = append(ids, id)
		}
		sortByID(ids, func(s string) string { return s })
	}
	for _, id := range ids {
		t, ok := s.tasks[id]
		if !ok {
			return nil, badRequest("InvalidConversionTaskId.Malformed", "The import task %s does not exist", id)
		}
		out.Tasks = append(out.Tasks, xmlTask{t.Description, t.ID, t.detail(), tagSet(s.tags[t.ID])})
	}
	return out, nil
}

func (s *Server) registerImage(p *params, now time.Time) (any, *apiError) {
	name := p.str("Name")
	if len(name) < 3 || len(name) > 128 {
		return nil, badRequest("InvalidAMIName.Malformed", "AMI names must be between 3 and 128 characters long")
	}
	for _, img := range s.images {
		if img.Name == name && img.Owner == s.o.AccountID {
			return nil, badRequest("InvalidAMIName.Duplicate", "AMI name %s is already in use by AMI %s", name, img.ID)
		}
	}
	arch := p.str("Architecture")
	if arch == "" {
		arch = "x86_64"
	}
	if arch != "x86_64" && arch != "arm64" {
		return nil, badRequest("InvalidParameterValue", "Invalid architecture %q", arch)
	}
	root := p.str("RootDeviceName")
	if root == "" {
		return nil, badRequest("MissingParameter", "RootDeviceName is required for an EBS-backed image")
	}
	var snapID string
	for _, bd := range p.list("BlockDeviceMapping") {
		if bd.str("DeviceName") == root {
			snapID = bd.str("Ebs.SnapshotId")
		}
	}
	if _, ok := s.snapshots[snapID]; !ok {
		return nil, badRequest("InvalidSnapshot.NotFound", "The snapshot '%s' does not exist (map the root device %s to a snapshot)", snapID, root)
	}
	if v := p.str("VirtualizationType"); v != "" && v != "hvm" {
		return nil, badRequest("InvalidParameterValue", "Only hvm images are supported")
	}
	img := &image{ID: s.newID("ami"), Name: name, Description: p.str("Description"), Arch: arch, Owner: s.o.AccountID,
		State: "available", Boot: BootK2OS, RootDevice: root, Snapshot: snapID, BootMode: p.str("BootMode"),
		ImdsSupport: p.str("ImdsSupport"), Ena: p.bool("EnaSupport"), Created: now}
	s.images[img.ID] = img
	s.born(img.ID, now, p.tagSpecs("image"))
	return struct {
		ImageID string `xml:"imageId"`
	}{img.ID}, nil
}
