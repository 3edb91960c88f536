"""The lab: a real POWER8 KVM-HV host under QEMU powernv8."""
