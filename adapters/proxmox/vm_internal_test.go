package proxmox

import "testing"

func TestDiskSizeGBReadsEveryUnitPVEWrites(t *testing.T) {
	tests := []struct {
		opts string
		want int
	}{
		{"local-lvm:vm-100-disk-0,size=20G", 20},
		{"local-lvm:vm-100-disk-0,size=2T", 2048},
		{"local-lvm:vm-100-disk-0,size=40960M", 40},
		{"local-lvm:vm-100-disk-0,size=41943040K", 40},
		{"local-lvm:vm-100-disk-0,size=42949672960", 40},
		{"local-lvm:vm-100-disk-0", 0},
	}
	for _, tt := range tests {
		if got := diskSizeGB(tt.opts); got != tt.want {
			t.Errorf("diskSizeGB(%q) = %d, want %d", tt.opts, got, tt.want)
		}
	}
}
