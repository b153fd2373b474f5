#!/bin/sh
# Runs inside a fresh root file system (Dockerfile RUN or debootstrap chroot) and makes it a
# systemd test host: apt cache auto-detection, no first-boot noise, units that make no sense in a
# container masked. Both image build paths call this one script.
set -eu

# apt uses the host's apt-cacher-ng (port 3142 on the default gateway) when it answers, and goes
# direct otherwise, so an image works with or without the cache.
cat >/usr/local/bin/apt-proxy-detect <<'EOF'
#!/bin/bash
gw=
while read -r _ dest hex _; do
  if [ "$dest" = 00000000 ]; then
    gw=$((16#${hex:6:2})).$((16#${hex:4:2})).$((16#${hex:2:2})).$((16#${hex:0:2}))
    break
  fi
done </proc/net/route
if [ -n "$gw" ] && timeout 1 bash -c "exec 3<>/dev/tcp/$gw/3142" 2>/dev/null; then
  echo "http://$gw:3142"
else
  echo DIRECT
fi
EOF
chmod 0755 /usr/local/bin/apt-proxy-detect
cat >/etc/apt/apt.conf.d/01streamcloud-proxy <<'EOF'
Acquire::http::Proxy-Auto-Detect "/usr/local/bin/apt-proxy-detect";
EOF
cat >/etc/apt/apt.conf.d/02streamcloud-test-image <<'EOF'
APT::Install-Recommends "false";
Acquire::Retries "3";
EOF

# A machine id is made at first boot, so two containers never share one.
: >/etc/machine-id
rm -f /var/lib/dbus/machine-id

# Units that wait for hardware or consoles that a container has not got.
for unit in getty.target console-getty.service systemd-firstboot.service \
            systemd-udevd.service systemd-udevd-control.socket systemd-udevd-kernel.socket \
            systemd-remount-fs.service sys-kernel-config.mount sys-kernel-debug.mount \
            sys-kernel-tracing.mount dev-hugepages.mount; do
  ln -sf /dev/null "/etc/systemd/system/$unit"
done

# Package lists stay, as on a cloud image, so a first run in check mode can resolve packages.
apt-get update -qq
apt-get clean
rm -rf /var/cache/apt/*.bin /tmp/* /var/tmp/*
