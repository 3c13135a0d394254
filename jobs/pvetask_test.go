package jobs

import "testing"

func TestOptionsMatchAsPVEShowsWhatWasSet(t *testing.T) {
	tests := []struct {
		name, got, want string
		match           bool
	}{
		{"a plain value", "2048", "2048", true},
		{"another value", "1024", "2048", false},
		{"an ISO PVE gave its size", "local:iso/rescue.iso,media=cdrom,size=300M", "local:iso/rescue.iso,media=cdrom", true},
		{"another ISO", "local:iso/other.iso,media=cdrom,size=300M", "local:iso/rescue.iso,media=cdrom", false},
		{"a MAC in another case, firewall added", "virtio=BC:24:11:00:64:00,bridge=vmbr0,firewall=1", "virtio=bc:24:11:00:64:00,bridge=vmbr0", true},
		{"another MAC", "virtio=BC:24:11:00:64:01,bridge=vmbr0", "virtio=BC:24:11:00:64:00,bridge=vmbr0", false},
		{"a boot order", "order=ide2;scsi0", "order=ide2;scsi0", true},
		{"the old boot order", "order=scsi0", "order=ide2;scsi0", false},
		{"an unset key", "", "ip=dhcp", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := optionsMatch(tt.got, tt.want); got != tt.match {
				t.Errorf("optionsMatch(%q, %q) = %v, want %v", tt.got, tt.want, got, tt.match)
			}
		})
	}
}
