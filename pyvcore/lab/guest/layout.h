/*
 * Guest memory layout and the little ABI between the VMM (vmm.c) and the
 * real-mode guest code (guest.S).  Included from both C and assembly, so
 * only #defines here.
 *
 * Guest physical memory (one memory slot at 0):
 *   0x0000 - 0x0fff  interrupt vectors (guest real mode, taken little-endian
 *                    because the VMM sets LPCR[ILE])
 *   0x1000 - ...     guest code
 *   0xf000           shared words (barrier counter)
 *   0x10000 + 0x100 * vcpu_id
 *                    one "vcpu area" per vcpu: counters the guest keeps and
 *                    the VMM reads after each report hcall
 */
#ifndef PYVCORE_GUEST_LAYOUT_H
#define PYVCORE_GUEST_LAYOUT_H

#define PV_SHARED_BARRIER   0xf000      /* 32-bit: vcpus that reached the doorbell barrier */
#define PV_AREA_BASE        0x10000
#define PV_AREA_SHIFT       8           /* 0x100 bytes per vcpu area */

/* vcpu area fields (all 64-bit) */
#define VA_TIR              0           /* TIR (SPR 446) read at start */
#define VA_ITERATIONS       8           /* spin-loop iterations done */
#define VA_REPORTS          16          /* report hcalls made */
#define VA_DECREMENTERS     24          /* decrementer interrupts taken (0x900) */
#define VA_DOORBELLS        32          /* directed privileged doorbells taken (0xa00) */
#define VA_WOKEN_BY         40          /* mask of sender TIRs found in the mailbox */
#define VA_PROGRAM_CHECKS   48          /* program interrupts taken (0x700) */
#define VA_PROGRAM_SRR0     56          /* SRR0 of the last one (the faulting instruction) */
#define VA_PROGRAM_SRR1     64          /* SRR1 of the last one */
#define VA_CEDES            72          /* H_CEDE calls that returned */
#define VA_PRODS            80          /* H_PROD calls made */
#define VA_DOORBELLS_SENT   88          /* msgsndp executed (and not trapped) */
#define VA_MAILBOX          96          /* senders OR (1 << their TIR) in before msgsndp */
#define VA_TIR_CHANGES      104         /* reports where TIR differed from VA_TIR */
#define VA_UNEXPECTED_VEC   112         /* vector of an interrupt the guest does not handle */
#define VA_UNEXPECTED_SRR0  120
#define VA_UNEXPECTED_SRR1  128
#define VA_MSGSNDP_TRAPS    136         /* msgsndp that raised a program interrupt */
#define VA_RESUME           144         /* where the program-check handler resumes (0: SRR0 + 4) */

/*
 * Private hcall numbers: above every PAPR/KVM hcall, so KVM-HV hands them to
 * userspace as KVM_EXIT_PAPR_HCALL.
 */
#define PV_HCALL_REPORT     0xf100      /* r4 = kind; counters are in the vcpu area */
#define PV_HCALL_EXIT       0xf104      /* "exits" scenario: a bare exit to userspace */

/* What the VMM answers a report with (r3) */
#define PV_RET_CONTINUE     0
#define PV_RET_STOP_WAITING 1           /* start phase over: stop waiting for siblings */

#define PV_KIND_PROGRESS    1
#define PV_KIND_UNEXPECTED  2

/* PAPR hcalls that KVM-HV implements in the kernel */
#define H_CEDE              0xe0
#define H_PROD              0xe4

/* Roles, passed in r15 */
#define PV_ROLE_SPIN        0           /* busy loop, report every r17 iterations */
#define PV_ROLE_CEDE_WAKER  1           /* spin a little, H_PROD every vcpu in mask r18 */
#define PV_ROLE_CEDE_SLEEPER 2          /* H_CEDE, count the wakeups, repeat */
#define PV_ROLE_DOORBELL    3           /* msgsndp every sibling thread, then spin */
#define PV_ROLE_EXITS       4           /* PV_HCALL_EXIT in a tight loop */
#define PV_ROLE_CEDE_TIMER  5           /* decrementer r17 ticks ahead, H_CEDE, repeat */

#define PV_CEDES_PER_REPORT 8           /* PV_ROLE_CEDE_TIMER: H_CEDEs between two reports */

/*
 * Initial registers set by the VMM:
 *   r13 = this vcpu's area, r14 = vcpu id, r15 = role,
 *   r16 = threads in the vcore (doorbell targets 0..r16-1),
 *   r17 = spin iterations between reports (PV_ROLE_CEDE_TIMER: decrementer
 *   ticks per cede), r18 = H_PROD target mask (vcpu ids).
 * r28-r31 belong to the interrupt handlers; the main code never uses them.
 */

#define PV_DBELL_TYPE_SERVER (5 << 27)  /* msgsndp rB: message type 5 (server doorbell) */
#define PV_DEC_FAR          0x7fffffff  /* decrementer value that will not fire for seconds */

#endif
