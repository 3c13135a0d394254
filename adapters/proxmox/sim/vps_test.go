package sim_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	pve "github.com/luthermonson/go-proxmox"

	"github.com/hostfleet/provisiond/adapters/proxmox/sim"
	"github.com/hostfleet/provisiond/adapters/simkit"
)

func node(c *pve.Client, name string) *pve.Node { return (&pve.Node{}).New(c, name) }

func getVM(t *testing.T, c *pve.Client, nodeName string, vmid int) *pve.VirtualMachine {
	t.Helper()
	vm, err := node(c, nodeName).VirtualMachine(context.Background(), vmid)
	if err != nil {
		t.Fatalf("VM %d: %v", vmid, err)
	}
	return vm
}

func wantOK(t *testing.T, c *pve.Client, task *pve.Task, typ string) {
	t.Helper()
	got := waitTask(t, c, task.UPID)
	if !got.IsSuccessful || got.Type != typ {
		t.Fatalf("task %s: type %s exit %q, want a successful %s", task.UPID, got.Type, got.ExitStatus, typ)
	}
}

func TestCloneOfATemplateIsLinkedAndLocksTheNewVMWhileItRuns(t *testing.T) {
	s, c, base := newSim(t)
	ctx := context.Background()
	tmpl := getVM(t, c, "pve1", 9000)
	newid, task, err := tmpl.Clone(ctx, &pve.VirtualMachineCloneOptions{NewID: 200, Name: "svc-42"})
	if err != nil || newid != 200 {
		t.Fatalf("clone: %d, %v", newid, err)
	}

	// While the task runs the new VM exists, locked, with PVE's temporary
	// configuration; the template has no config lock.
	var cfg map[string]any
	if err := c.Get(ctx, "/nodes/pve1/qemu/200/config", &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg["lock"] != "clone" || cfg["description"] != " qmclone temporary file\n" || cfg["name"] != nil {
		t.Errorf("config while cloning = %v", cfg)
	}
	if vm, _ := s.VM("pve1", 9000); vm.Lock != "" {
		t.Errorf("template lock %q, want none (PVE holds a file lock, not a config lock)", vm.Lock)
	}
	for _, tt := range []struct{ method, path, body, want string }{
		{"POST", "/nodes/pve1/qemu/200/status/start", "", "500 VM is locked (clone)"},
		{"PUT", "/nodes/pve1/qemu/200/config", "cores=2", "500 VM is locked (clone)"},
		{"POST", "/nodes/pve1/qemu/9000/clone", "newid=200", "500 unable to create VM 200: config file already exists"},
		// The stopped source holds a shared lock: a config change waits for
		// it and gives up.
		{"PUT", "/nodes/pve1/qemu/9000/config", "description=x", "500 can't lock file '/var/lock/qemu-server/lock-9000.conf' - got timeout"},
	} {
		if status, body := raw(t, tt.method, base+"/api2/json"+tt.path, tt.body); status != tt.want {
			t.Errorf("%s %s: %s %s, want %s", tt.method, tt.path, status, body, tt.want)
		}
	}
	// A second clone of the template may run alongside (shared lock).
	if _, second, err := tmpl.Clone(ctx, &pve.VirtualMachineCloneOptions{NewID: 201}); err != nil {
		t.Errorf("second clone: %v", err)
	} else {
		wantOK(t, c, second, "qmclone")
	}
	wantOK(t, c, task, "qmclone")

	got := getVM(t, c, "pve1", 200)
	if got.Name != "svc-42" || got.Lock != "" || got.Status != "stopped" || got.CPUs != 1 || got.MaxMem != 1024<<20 || got.MaxDisk != 10<<30 {
		t.Errorf("clone = %+v", got)
	}
	if got.Template != false || got.VirtualMachineConfig.Template {
		t.Errorf("clone is a template")
	}
	if d := got.VirtualMachineConfig.SCSIs["scsi0"]; d != "local-lvm:base-9000-disk-0/vm-200-disk-0,size=10G" {
		t.Errorf("scsi0 = %q, want a linked clone of the base disk", d)
	}
	if got.VirtualMachineConfig.CIUser != "debian" {
		t.Errorf("ciuser %q not copied", got.VirtualMachineConfig.CIUser)
	}
	other := getVM(t, c, "pve1", 201)
	if other.Name != "Copy-of-VM-debian-12-template" {
		t.Errorf("default clone name %q", other.Name)
	}
	if got.VirtualMachineConfig.Nets["net0"] == other.VirtualMachineConfig.Nets["net0"] {
		t.Errorf("clones share net0 %q: PVE gives each a new MAC", got.VirtualMachineConfig.Nets["net0"])
	}
}

func TestCloneRefusals(t *testing.T) {
	s, c, base := newSim(t)
	ctx := context.Background()
	s.AddVM(sim.VM{Node: "pve2", VMID: 300})
	tests := []struct{ path, body, want string }{
		{"/nodes/pve1/qemu/101/clone", "", "400 Parameter verification failed."},
		{"/nodes/pve1/qemu/101/clone", "newid=102&target=pve2", "500 can't clone VM to node 'pve2' (VM uses local storage)"},
		{"/nodes/pve1/qemu/101/clone", "newid=103&storage=nope", "500 storage 'nope' does not exist"},
		{"/nodes/pve1/qemu/101/clone", "newid=103&storage=local", "500 storage 'local' does not support vm images"},
		{"/nodes/pve1/qemu/9000/clone", "newid=103&storage=local-lvm", "500 parameter 'storage' not allowed for linked clones"},
		{"/nodes/pve1/qemu/101/clone", "newid=103&target=pve9", "500 no such cluster node 'pve9'"},
	}
	for _, tt := range tests {
		if status, body := raw(t, "POST", base+"/api2/json"+tt.path, tt.body); status != tt.want {
			t.Errorf("%s %s: %s %s, want %s", tt.path, tt.body, status, body, tt.want)
		}
	}
	// A VMID another node has: PVE's cluster file system refuses the file
	// in the worker, so the task fails and no VM appears.
	src := getVM(t, c, "pve1", 101)
	_, task, err := src.Clone(ctx, &pve.VirtualMachineCloneOptions{NewID: 300})
	if err != nil {
		t.Fatal(err)
	}
	if got := waitTask(t, c, task.UPID); got.ExitStatus != "close (rename) atomic file '/etc/pve/nodes/pve1/qemu-server/300.conf' failed: File exists" {
		t.Errorf("exit %q", got.ExitStatus)
	}
	// A clone that fails leaves nothing behind; its source is unlocked.
	s.Inject(simkit.Fault{Op: "clone", TaskError: "storage migration failed"})
	_, task, err = src.Clone(ctx, &pve.VirtualMachineCloneOptions{NewID: 301, Full: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := waitTask(t, c, task.UPID); got.ExitStatus != "clone failed: storage migration failed" {
		t.Errorf("exit %q", got.ExitStatus)
	}
	if _, ok := s.VM("pve1", 301); ok {
		t.Error("failed clone left its VM")
	}
	if status, _ := raw(t, "PUT", base+"/api2/json/nodes/pve1/qemu/101/config", "cores=2"); status != "200 OK" {
		t.Errorf("source still locked: %s", status)
	}
}

func TestCloneOfARunningVMLocksItExclusively(t *testing.T) {
	s, c, base := newSim(t)
	_, task, err := getVM(t, c, "pve1", 100).Clone(context.Background(), &pve.VirtualMachineCloneOptions{NewID: 250, Full: true})
	if err != nil {
		t.Fatal(err)
	}
	if status, _ := raw(t, "POST", base+"/api2/json/nodes/pve1/qemu/100/clone", "newid=251"); status != "500 can't lock file '/var/lock/qemu-server/lock-100.conf' - got timeout" {
		t.Errorf("second clone of a running VM: %s", status)
	}
	var upid pve.UPID
	if err := c.Post(context.Background(), "/nodes/pve1/qemu/100/status/stop", nil, &upid); err != nil {
		t.Fatal(err)
	}
	if got := waitTask(t, c, upid); !strings.Contains(got.ExitStatus, "got timeout") {
		t.Errorf("stop during clone ended %q, want the lock timeout", got.ExitStatus)
	}
	wantOK(t, c, task, "qmclone")
	if vm, _ := s.VM("pve1", 250); vm.Cores != 2 || vm.MemoryMB != 2048 || vm.DiskGB != 40 || !slices.Equal(vm.Tags, []string{"demo"}) {
		t.Errorf("clone = %+v", vm)
	}
	if vm := getVM(t, c, "pve1", 250); vm.VirtualMachineConfig.SCSIs["scsi0"] != "local-lvm:vm-250-disk-0,size=40G" {
		t.Errorf("full clone disk %q", vm.VirtualMachineConfig.SCSIs["scsi0"])
	}
}

func TestClusterResourcesFindAVMByTag(t *testing.T) {
	s, c, base := newSim(t)
	s.AddVM(sim.VM{Node: "pve2", VMID: 310, Name: "svc-7", Tags: []string{"svc-7", "provisiond"}})
	cl, err := c.Cluster(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rs, err := cl.Resources(context.Background(), "vm")
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, r := range rs {
		if r.Type != "qemu" {
			t.Errorf("type=vm listed %s %s", r.Type, r.ID)
		}
		if slices.Contains(strings.Split(r.Tags, ";"), "svc-7") {
			found = append(found, fmt.Sprintf("%s %s %d", r.ID, r.Node, r.VMID))
		}
	}
	if len(found) != 1 || found[0] != "qemu/310 pve2 310" {
		t.Errorf("VMs tagged svc-7: %v", found)
	}
	all, err := cl.Resources(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]int{}
	for _, r := range all {
		types[r.Type]++
	}
	if types["qemu"] != 5 || types["node"] != 2 || types["storage"] != 4 {
		t.Errorf("resource types %v", types)
	}
	if status, body := raw(t, "GET", base+"/api2/json/cluster/resources?type=vms", ""); status != "400 Parameter verification failed." || !strings.Contains(body, "enumeration") {
		t.Errorf("bad type: %s %s", status, body)
	}
}

func TestConfigUpdateAndCloudInit(t *testing.T) {
	s, c, base := newSim(t)
	ctx := context.Background()
	vm := getVM(t, c, "pve1", 101)
	key := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq0b6rQ3TKY0ixlB0UcCeF4Ndk0HmYlzZpCcg1mBdxx user@host"
	task, err := vm.Config(ctx,
		pve.VirtualMachineOption{Name: "cores", Value: 6},
		pve.VirtualMachineOption{Name: "memory", Value: 16384},
		pve.VirtualMachineOption{Name: "ciuser", Value: "admin"},
		pve.VirtualMachineOption{Name: "cipassword", Value: "hunter2"},
		pve.VirtualMachineOption{Name: "sshkeys", Value: pve.EncodeSSHKeys(key)},
		pve.VirtualMachineOption{Name: "ipconfig0", Value: "ip=203.0.113.7/24,gw=203.0.113.1"},
		pve.VirtualMachineOption{Name: "ide2", Value: "local:iso/rescue.iso,media=cdrom"},
		pve.VirtualMachineOption{Name: "boot", Value: "order=ide2;scsi0"},
		pve.VirtualMachineOption{Name: "tags", Value: "svc-9;demo,alpha"},
	)
	if err != nil {
		t.Fatal(err)
	}
	wantOK(t, c, task, "qmconfig")
	cfg := getVM(t, c, "pve1", 101).VirtualMachineConfig
	if cfg.CIPassword != "**********" || cfg.CIUser != "admin" || cfg.SSHKeys != pve.EncodeSSHKeys(key) ||
		cfg.IPConfigs["ipconfig0"] != "ip=203.0.113.7/24,gw=203.0.113.1" || cfg.IDEs["ide2"] != "local:iso/rescue.iso,media=cdrom" ||
		cfg.Tags != "alpha;demo;svc-9" || *cfg.Cores != 6 || int(cfg.Memory) != 16384 || cfg.Boot != "order=ide2;scsi0" {
		t.Errorf("config = %+v", cfg)
	}
	if stored, _ := s.VM("pve1", 101); !strings.HasPrefix(stored.Config["cipassword"], "$5$") {
		t.Errorf("cipassword stored as %q, want a hash", stored.Config["cipassword"])
	}

	// delete removes keys; PUT is synchronous.
	if err := vm.ConfigSync(ctx, pve.VirtualMachineOption{Name: "delete", Value: "ide2,tags"}); err != nil {
		t.Fatal(err)
	}
	cfg = getVM(t, c, "pve1", 101).VirtualMachineConfig
	if cfg.IDEs["ide2"] != "" || cfg.Tags != "" {
		t.Errorf("after delete: ide2 %q tags %q", cfg.IDEs["ide2"], cfg.Tags)
	}

	digest := cfg.Digest
	tests := []struct{ method, body, status, bodyHas string }{
		{"PUT", "name=x&digest=" + digest, "200 OK", ""},
		{"PUT", "name=y&digest=" + digest, "500 checksum missmatch (file change by other user?)", ""},
		{"POST", "bogus=1", "400 Parameter verification failed.", `"bogus":"property is not defined in schema`},
		{"POST", "delete=bogus", "400 Parameter verification failed.", `"delete":"unknown option 'bogus'"`},
		{"POST", "sshkeys=" + url.QueryEscape(url.QueryEscape(key)), "400 Parameter verification failed.", `invalid urlencoded string`},
		{"POST", "sshkeys=" + url.QueryEscape("not%20a%20key"), "500 SSH public key validation error", ""},
		{"POST", "ide2=" + url.QueryEscape("local:iso/nope.iso,media=cdrom"), "500 volume 'local:iso/nope.iso' does not exist", ""},
		{"POST", "cores=0", "400 Parameter verification failed.", `"cores":"value must have a minimum value of 1"`},
		{"POST", "tags=" + url.QueryEscape("bad tag!"), "400 Parameter verification failed.", `invalid characters in tag`},
		{"POST", "ipconfig0=ip%3D300.1.1.1%2F24", "400 Parameter verification failed.", `invalid IP address`},
		{"POST", "", "500 no options specified", ""},
		{"POST", "skiplock=1&cores=2", "400 Parameter verification failed.", `"skiplock":"Only root may use this option."`},
	}
	for _, tt := range tests {
		status, body := raw(t, tt.method, base+"/api2/json/nodes/pve1/qemu/101/config", tt.body)
		if status != tt.status || !strings.Contains(body, tt.bodyHas) {
			t.Errorf("%s %s: %s %s, want %s with %s", tt.method, tt.body, status, body, tt.status, tt.bodyHas)
		}
	}
}

func TestConfigOfARunningVMIsPendingUntilItRestarts(t *testing.T) {
	_, c, _ := newSim(t)
	ctx := context.Background()
	vm := getVM(t, c, "pve1", 100)
	if err := vm.ConfigSync(ctx, pve.VirtualMachineOption{Name: "cores", Value: 8}, pve.VirtualMachineOption{Name: "description", Value: "hot"}); err != nil {
		t.Fatal(err)
	}
	vm = getVM(t, c, "pve1", 100)
	if vm.CPUs != 2 || *vm.VirtualMachineConfig.Cores != 8 || vm.VirtualMachineConfig.Description != "hot" {
		t.Errorf("running: cpus %d, config cores %d, description %q; want 2 running, 8 configured", vm.CPUs, *vm.VirtualMachineConfig.Cores, vm.VirtualMachineConfig.Description)
	}
	var current map[string]any
	if err := c.Get(ctx, "/nodes/pve1/qemu/100/config?current=1", &current); err != nil || current["cores"] != 2.0 {
		t.Errorf("current config cores %v (%v), want 2", current["cores"], err)
	}
	var pending []map[string]any
	if err := c.Get(ctx, "/nodes/pve1/qemu/100/pending", &pending); err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(pending, func(p map[string]any) bool { return p["key"] == "cores" && p["value"] == "2" && p["pending"] == "8" }) {
		t.Errorf("pending = %v", pending)
	}
	task, err := vm.Reboot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantOK(t, c, task, "qmreboot")
	if vm = getVM(t, c, "pve1", 100); vm.CPUs != 8 || vm.Status != "running" {
		t.Errorf("after reboot: cpus %d status %s", vm.CPUs, vm.Status)
	}
}

func TestResizeDisk(t *testing.T) {
	s, c, base := newSim(t)
	ctx := context.Background()
	vm := getVM(t, c, "pve1", 101)
	task, err := vm.ResizeDisk(ctx, "scsi0", "+10G")
	if err != nil {
		t.Fatal(err)
	}
	wantOK(t, c, task, "resize")
	task, err = vm.ResizeDisk(ctx, "scsi0", "100G")
	if err != nil {
		t.Fatal(err)
	}
	wantOK(t, c, task, "resize")
	if got, _ := s.VM("pve1", 101); got.DiskGB != 100 {
		t.Errorf("disk %d GB, want 100", got.DiskGB)
	}
	if cfg := getVM(t, c, "pve1", 101).VirtualMachineConfig; cfg.SCSIs["scsi0"] != "local-lvm:vm-101-disk-0,size=100G" {
		t.Errorf("scsi0 %q", cfg.SCSIs["scsi0"])
	}
	for _, tt := range []struct{ body, want string }{
		{"disk=scsi0&size=50G", "500 shrinking disks is not supported"},
		{"disk=scsi1&size=%2B1G", "500 disk 'scsi1' does not exist"},
		{"disk=scsi0&size=lots", "400 Parameter verification failed."},
		{"disk=scsi0&size=%2B1G&digest=0000", "500 checksum missmatch (file change by other user?)"},
	} {
		if status, body := raw(t, "PUT", base+"/api2/json/nodes/pve1/qemu/101/resize", tt.body); status != tt.want {
			t.Errorf("%s: %s %s, want %s", tt.body, status, body, tt.want)
		}
	}
}

func TestHibernateAndResume(t *testing.T) {
	s, c, base := newSim(t)
	ctx := context.Background()
	vm := getVM(t, c, "pve1", 100)
	task, err := vm.Hibernate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantOK(t, c, task, "qmsuspend")
	vm = getVM(t, c, "pve1", 100)
	if !vm.IsHibernated() || vm.VirtualMachineConfig.Lock != "suspended" {
		t.Errorf("after hibernate: status %s lock %s", vm.Status, vm.Lock)
	}
	if got, _ := s.VM("pve1", 100); !strings.HasPrefix(got.Config["vmstate"], "local-lvm:vm-100-state-suspend-") {
		t.Errorf("vmstate %q", got.Config["vmstate"])
	}
	if status, _ := raw(t, "PUT", base+"/api2/json/nodes/pve1/qemu/100/config", "cores=3"); status != "500 VM is locked (suspended)" {
		t.Errorf("config of a hibernated VM: %s", status)
	}
	task, err = vm.Resume(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantOK(t, c, task, "qmresume")
	vm = getVM(t, c, "pve1", 100)
	if vm.Status != "running" || vm.Lock != "" || vm.VirtualMachineConfig.Lock != "" {
		t.Errorf("after resume: status %s lock %q", vm.Status, vm.Lock)
	}
}

func TestDestroy(t *testing.T) {
	s, c, base := newSim(t)
	ctx := context.Background()
	if status, _ := raw(t, "DELETE", base+"/api2/json/nodes/pve1/qemu/100", ""); status != "500 VM 100 is running - destroy failed" {
		t.Errorf("destroy of a running VM: %s", status)
	}
	backups := func() int {
		var items []map[string]any
		if err := c.Get(ctx, "/nodes/pve1/storage/local/content?content=backup&vmid=101", &items); err != nil {
			t.Fatal(err)
		}
		return len(items)
	}
	before := backups()
	task, err := getVM(t, c, "pve1", 101).Delete(ctx, &pve.VirtualMachineDeleteOptions{Purge: true, DestroyUnreferencedDisks: true})
	if err != nil {
		t.Fatal(err)
	}
	if vm, _ := s.VM("pve1", 101); vm.Lock != "destroyed" {
		t.Errorf("lock while destroying %q", vm.Lock)
	}
	wantOK(t, c, task, "qmdestroy")
	if _, ok := s.VM("pve1", 101); ok {
		t.Error("VM still there")
	}
	if before == 0 || backups() != before {
		t.Errorf("backups %d before, %d after: purge keeps backup archives", before, backups())
	}

	locked := sim.VM{Node: "pve1", VMID: 120, Lock: "backup"}
	s.AddVM(locked)
	var upid pve.UPID
	if err := c.Delete(ctx, "/nodes/pve1/qemu/120", &upid); err != nil {
		t.Fatal(err)
	}
	if got := waitTask(t, c, upid); got.ExitStatus != "VM is locked (backup)" {
		t.Errorf("destroy of a locked VM ended %q", got.ExitStatus)
	}
	if _, ok := s.VM("pve1", 120); !ok {
		t.Error("locked VM destroyed")
	}
}

func TestBackupAndRestore(t *testing.T) {
	s, c, base := newSim(t)
	ctx := context.Background()
	remove := pve.IntOrBool(true)
	keep := "keep-last=2"
	task, err := node(c, "pve1").Vzdump(ctx, &pve.VirtualMachineBackupOptions{
		VMID: 101, Storage: "local", Mode: "snapshot", Compress: "zstd", Remove: &remove, PruneBackups: &keep,
		NotesTemplate: "{{guestname}} on {{node}} ({{vmid}})",
	})
	if err != nil {
		t.Fatal(err)
	}
	if vm, _ := s.VM("pve1", 101); vm.Lock != "backup" {
		t.Errorf("lock during backup %q", vm.Lock)
	}
	if status, _ := raw(t, "POST", base+"/api2/json/nodes/pve1/qemu/101/status/start", ""); status != "500 VM is locked (backup)" {
		t.Errorf("start during backup: %s", status)
	}
	if task.ID != "" {
		t.Logf("task id %s", task.ID)
	}
	wantOK(t, c, task, "vzdump")
	if !strings.Contains(string(task.UPID), ":vzdump:101:") {
		t.Errorf("UPID %s, want the VMID as its id", task.UPID)
	}

	var items []*pve.StorageContent
	if err := c.Get(ctx, "/nodes/pve1/storage/local/content?content=backup&vmid=101", &items); err != nil {
		t.Fatal(err)
	}
	if len(items) != 2 {
		t.Fatalf("backups of 101: %d, want the seeded one and the new one (keep-last=2)", len(items))
	}
	newest := items[len(items)-1]
	if !strings.HasPrefix(newest.Volid, "local:backup/vzdump-qemu-101-") || !strings.HasSuffix(newest.Volid, ".vma.zst") ||
		newest.Format != "vma.zst" || newest.Notes != "db-1 on pve1 (101)" || newest.VMID != 101 || newest.Size == 0 || newest.Ctime == 0 {
		t.Errorf("backup = %+v", newest)
	}

	// Change the VM, then restore it from the backup.
	vm := getVM(t, c, "pve1", 101)
	if err := vm.ConfigSync(ctx, pve.VirtualMachineOption{Name: "cores", Value: 12}, pve.VirtualMachineOption{Name: "name", Value: "changed"}); err != nil {
		t.Fatal(err)
	}
	restore := fmt.Sprintf("vmid=101&archive=%s&storage=local-lvm", url.QueryEscape(newest.Volid))
	if status, _ := raw(t, "POST", base+"/api2/json/nodes/pve1/qemu", restore); status != "500 unable to restore VM 101 - VM 101 already exists on node 'pve1'" {
		t.Errorf("restore without force: %s", status)
	}
	if status, _ := raw(t, "POST", base+"/api2/json/nodes/pve1/qemu", "vmid=100&force=1&archive="+url.QueryEscape(newest.Volid)); status != "500 unable to restore VM 100 - vm is running" {
		t.Errorf("restore over a running VM: %s", status)
	}
	var upid pve.UPID
	if err := c.Post(ctx, "/nodes/pve1/qemu", map[string]any{"vmid": 101, "archive": newest.Volid, "force": true, "storage": "local-lvm"}, &upid); err != nil {
		t.Fatal(err)
	}
	if vm, _ := s.VM("pve1", 101); vm.Lock != "create" {
		t.Errorf("lock during restore %q", vm.Lock)
	}
	got := waitTask(t, c, upid)
	if !got.IsSuccessful || got.Type != "qmrestore" {
		t.Fatalf("restore task %+v", got)
	}
	if vm, _ := s.VM("pve1", 101); vm.Cores != 4 || vm.Name != "db-1" || vm.Lock != "" || vm.Status != "stopped" {
		t.Errorf("after restore: %+v", vm)
	}
	// Restore into a new VMID.
	if err := c.Post(ctx, "/nodes/pve1/qemu", map[string]any{"vmid": 150, "archive": newest.Volid, "unique": 1}, &upid); err != nil {
		t.Fatal(err)
	}
	waitTask(t, c, upid)
	if vm, ok := s.VM("pve1", 150); !ok || vm.Name != "db-1" || vm.DiskGB != 80 {
		t.Errorf("restored copy %+v", vm)
	}
}

func TestBackupOfALockedVMIsAJobError(t *testing.T) {
	s, c, _ := newSim(t)
	s.AddVM(sim.VM{Node: "pve1", VMID: 130, Lock: "migrate"})
	task, err := node(c, "pve1").Vzdump(context.Background(), &pve.VirtualMachineBackupOptions{VMID: 130, Storage: "local"})
	if err != nil {
		t.Fatal(err)
	}
	got := waitTask(t, c, task.UPID)
	if got.ExitStatus != "job errors" {
		t.Errorf("exit %q", got.ExitStatus)
	}
	log, _ := got.Log(context.Background(), 0, 50)
	found := false
	for _, l := range log {
		found = found || l == "ERROR: Backup of VM 130 failed - VM is locked (migrate)"
	}
	if !found {
		t.Errorf("log %v", log)
	}
}

func TestStorageContent(t *testing.T) {
	_, c, base := newSim(t)
	ctx := context.Background()
	storages, err := node(c, "pve1").Storages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(storages) != 2 || storages[0].Name != "local" || storages[0].Content != "backup,iso,vztmpl" || storages[1].Content != "images,rootdir" || storages[0].Total == 0 {
		t.Errorf("storages %+v %+v", storages[0], storages[1])
	}
	iso, err := node(c, "pve1").StorageISO(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var isos []*pve.StorageContent
	if err := c.Get(ctx, "/nodes/pve1/storage/local/content?content=iso", &isos); err != nil {
		t.Fatal(err)
	}
	if len(isos) < 3 || !slices.ContainsFunc(isos, func(i *pve.StorageContent) bool { return i.Volid == "local:iso/rescue.iso" && i.Format == "iso" }) {
		t.Errorf("ISOs %v", isos)
	}
	if got, err := iso.ISO(ctx, "rescue.iso"); err != nil || got.Size == 0 {
		t.Errorf("rescue ISO %+v %v", got, err)
	}
	var images []*pve.StorageContent
	if err := c.Get(ctx, "/nodes/pve1/storage/local-lvm/content?vmid=100", &images); err != nil || len(images) != 1 || images[0].Volid != "local-lvm:vm-100-disk-0" {
		t.Errorf("images of 100: %v %v", images, err)
	}

	var backups []*pve.StorageContent
	if err := c.Get(ctx, "/nodes/pve1/storage/local/content?content=backup&vmid=100", &backups); err != nil || len(backups) != 2 {
		t.Fatalf("demo backups of 100: %d, %v", len(backups), err)
	}
	task, err := iso.DeleteContent(ctx, backups[0].Volid)
	if err != nil {
		t.Fatal(err)
	}
	got := waitTask(t, c, task.UPID)
	if !got.IsSuccessful || got.Type != "imgdel" || got.ID != "100@local" {
		t.Errorf("delete task %s %s %q", got.Type, got.ID, got.ExitStatus)
	}
	// Deleting it again: PVE's directory plugin only warns.
	task, err = iso.DeleteContent(ctx, backups[0].Volid)
	if err != nil {
		t.Fatal(err)
	}
	if got := waitTask(t, c, task.UPID); got.ExitStatus != "WARNINGS: 1" {
		t.Errorf("second delete ended %q", got.ExitStatus)
	}
	for _, tt := range []struct{ method, path, want string }{
		{"GET", "/nodes/pve1/storage/nope/content", "500 storage 'nope' does not exist"},
		{"GET", "/nodes/pve1/storage/local/content?content=movies", "400 Parameter verification failed."},
		{"DELETE", "/nodes/pve1/storage/local/content/local-lvm:vm-100-disk-0", "400 Parameter verification failed."},
		{"GET", "/nodes/pve1/storage/nope/status", "500 storage 'nope' does not exist"},
	} {
		if status, body := raw(t, tt.method, base+"/api2/json"+tt.path, ""); status != tt.want {
			t.Errorf("%s %s: %s %s, want %s", tt.method, tt.path, status, body, tt.want)
		}
	}
}

func TestRRDData(t *testing.T) {
	s, c, base := newSim(t)
	ctx := context.Background()
	steps := map[pve.Timeframe]uint64{pve.TimeframeHour: 60, pve.TimeframeDay: 1800, pve.TimeframeWeek: 10800, pve.TimeframeMonth: 43200, pve.TimeframeYear: 604800}
	running := getVM(t, c, "pve1", 100)
	for tf, step := range steps {
		for _, cf := range []pve.ConsolidationFunction{pve.AVERAGE, pve.MAX} {
			points, err := running.RRDData(ctx, tf, cf)
			if err != nil {
				t.Fatal(err)
			}
			if len(points) != 70 {
				t.Fatalf("%s: %d points", tf, len(points))
			}
			for i, p := range points {
				if i > 0 && p.Time-points[i-1].Time != step {
					t.Fatalf("%s: step %d", tf, p.Time-points[i-1].Time)
				}
				if p.CPU <= 0 || p.CPU > 1 || p.Mem <= 0 || p.MaxMem != 2048<<20 || p.MaxCPU != 2 || p.NetIn <= 0 {
					t.Fatalf("%s %s point %+v", tf, cf, p)
				}
			}
		}
	}
	// A stopped VM's points have no usage keys at all, as PVE's JSON.
	var stopped []map[string]any
	if err := c.Get(ctx, "/nodes/pve1/qemu/101/rrddata?timeframe=hour", &stopped); err != nil {
		t.Fatal(err)
	}
	for _, p := range stopped {
		if len(p) != 5 || p["maxcpu"] != 4.0 || p["disk"] != 0.0 {
			t.Fatalf("stopped point %v", p)
		}
	}
	_ = s
	if status, body := raw(t, "GET", base+"/api2/json/nodes/pve1/qemu/100/rrddata?timeframe=decade", ""); status != "400 Parameter verification failed." || !strings.Contains(body, "hour, day, week, month, year") {
		t.Errorf("bad timeframe: %s %s", status, body)
	}
}

func TestTicketLoginAndCSRF(t *testing.T) {
	s := sim.New(sim.Config{TokenID: tokenID, TokenSecret: tokenSecret, TaskDuration: taskTime, User: "root@pam", Password: "pw"})
	for _, vm := range sim.DemoVMs() {
		s.AddVM(vm)
	}
	srv := httpServer(t, s)
	ctx := context.Background()
	bad := pve.NewClient(srv+"/api2/json", pve.WithCredentials(&pve.Credentials{Username: "root@pam", Password: "nope"}), pve.WithHTTPClient(&http.Client{Timeout: 2 * time.Second}))
	if _, err := bad.Version(ctx); err == nil {
		t.Error("wrong password logged in")
	}
	c := pve.NewClient(srv+"/api2/json", pve.WithCredentials(&pve.Credentials{Username: "root@pam", Password: "pw"}), pve.WithHTTPClient(&http.Client{Timeout: 2 * time.Second}))
	var upid pve.UPID
	if err := c.Post(ctx, "/nodes/pve1/qemu/101/status/start", nil, &upid); err != nil {
		t.Fatalf("write with a ticket: %v", err)
	}
	if task := waitTask(t, c, upid); task.User != "root@pam" {
		t.Errorf("task user %q", task.User)
	}
	// The cookie alone does not allow a write.
	sess := login(t, srv, "root@pam", "pw")
	req, _ := http.NewRequest("POST", srv+"/api2/json/nodes/pve1/qemu/101/status/stop", nil)
	req.AddCookie(&http.Cookie{Name: "PVEAuthCookie", Value: sess.Ticket})
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.Status != "401 Permission denied - invalid csrf token" {
		t.Errorf("write without CSRF token: %s", res.Status)
	}
	var body struct {
		Data map[string]any `json:"data"`
	}
	resp, _ := http.PostForm(srv+"/api2/json/access/ticket", map[string][]string{"username": {"root@pam"}, "password": {sess.Ticket}})
	json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != 200 || body.Data["ticket"] == nil {
		t.Errorf("renewing with the ticket as password: %s %v", resp.Status, body.Data)
	}
}

// httpServer serves s and returns its base URL.
func httpServer(t *testing.T, s *sim.Server) string {
	t.Helper()
	ts := httptest.NewServer(s)
	t.Cleanup(func() { ts.Close(); s.Close() })
	return ts.URL
}

// login posts to /access/ticket and returns the session.
func login(t *testing.T, base, user, password string) pve.Session {
	t.Helper()
	res, err := http.PostForm(base+"/api2/json/access/ticket", url.Values{"username": {user}, "password": {password}})
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body struct{ Data pve.Session }
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil || res.StatusCode != 200 {
		t.Fatalf("login: %s %v", res.Status, err)
	}
	return body.Data
}
