/*
 * Real-mode guest code for the pyvcore lab VMM (vmm.c).
 *
 * This file is linked into the VMM as the read-only section .pvguest; the VMM
 * copies pv_guest_start..pv_guest_end to guest physical 0, so an offset in
 * this section is the guest physical address of that instruction.
 *
 * The guest runs in real mode (MSR = SF|ME|LE, later EE for the roles that
 * wait for interrupts) and talks to the VMM only through hcalls (`sc 1`):
 * PV_HCALL_REPORT tells the VMM "read my vcpu area now".  Registers on entry
 * and the memory layout are described in layout.h.
 *
 * Register use: r13-r18 inputs (never changed), r19 = TIR, r20-r27 main-code
 * scratch, r3-r12 hcall arguments (clobbered by every hcall),
 * r28-r31 interrupt handlers only.
 */
#include "layout.h"

#define SPRN_TIR	446
#define MSR_EE		0x8000

/* Absolute guest address of a label in this section. */
#define GPA(label)	((label) - pv_guest_start)

	.macro LOADI reg, val
	lis	\reg, (\val) >> 16
	ori	\reg, \reg, (\val) & 0xffff
	.endm

	/* 64-bit counter in the vcpu area += 1 (does not touch CR) */
	.macro INC field, tmp
	ld	\tmp, \field(r13)
	addi	\tmp, \tmp, 1
	std	\tmp, \field(r13)
	.endm

	/* An interrupt this guest never expects: record it and tell the VMM. */
	.macro UNEXPECTED vec
	.org	\vec
	li	r28, \vec
	b	unexpected
	.endm

	.section .pvguest, "a"
	.p2align 12
	.globl	pv_guest_start
pv_guest_start:
	b	start

	UNEXPECTED 0x100	/* system reset */
	UNEXPECTED 0x200	/* machine check */
	UNEXPECTED 0x300	/* data storage */
	UNEXPECTED 0x380	/* data segment */
	UNEXPECTED 0x400	/* instruction storage */
	UNEXPECTED 0x480	/* instruction segment */
	UNEXPECTED 0x500	/* external */
	UNEXPECTED 0x600	/* alignment */

	/*
	 * Program interrupt.  KVM-HV injects one when it refuses an instruction
	 * the hardware trapped to the hypervisor (e.g. msgsndp with HFSCR[MSGP]
	 * clear).  Record SRR0/SRR1.  SRR0 itself is being measured, so resume
	 * where the main code said (VA_RESUME) rather than trusting SRR0 + 4.
	 */
	.org	0x700
program_check:
	mfcr	r31
	INC	VA_PROGRAM_CHECKS, r28
	mfsrr0	r28
	std	r28, VA_PROGRAM_SRR0(r13)
	mfsrr1	r29
	std	r29, VA_PROGRAM_SRR1(r13)
	addi	r28, r28, 4
	ld	r29, VA_RESUME(r13)
	cmpdi	r29, 0
	beq	1f
	mr	r28, r29
1:	mtsrr0	r28
	mtcrf	0xff, r31
	rfid

	UNEXPECTED 0x800	/* FP unavailable */

	/* Decrementer: push it far away again and return. */
	.org	0x900
decrementer:
	INC	VA_DECREMENTERS, r28
	LOADI	r28, PV_DEC_FAR
	mtdec	r28
	rfid

	UNEXPECTED 0x980	/* hypervisor decrementer (never reaches a guest) */

	/*
	 * Directed privileged doorbell (msgsndp from a sibling thread).  The
	 * sender OR-ed (1 << its TIR) into our mailbox before sending: move
	 * the mailbox into woken_by so the VMM can say who woke us.
	 */
	.org	0xa00
doorbell:
	mfcr	r31
	INC	VA_DOORBELLS, r28
	addi	r29, r13, VA_MAILBOX
	li	r30, 0
1:	ldarx	r28, 0, r29
	stdcx.	r30, 0, r29
	bne-	1b
	ld	r30, VA_WOKEN_BY(r13)
	or	r30, r30, r28
	std	r30, VA_WOKEN_BY(r13)
	mtcrf	0xff, r31
	rfid

	UNEXPECTED 0xb00
	UNEXPECTED 0xc00	/* system call (sc 0) */
	UNEXPECTED 0xd00	/* trace */
	UNEXPECTED 0xe00
	UNEXPECTED 0xf00	/* performance monitor */
	UNEXPECTED 0xf20	/* vector unavailable */
	UNEXPECTED 0xf40	/* VSX unavailable */
	UNEXPECTED 0xf60	/* facility unavailable */

unexpected:
	std	r28, VA_UNEXPECTED_VEC(r13)
	mfsrr0	r29
	std	r29, VA_UNEXPECTED_SRR0(r13)
	mfsrr1	r29
	std	r29, VA_UNEXPECTED_SRR1(r13)
	li	r4, PV_KIND_UNEXPECTED
	LOADI	r3, PV_HCALL_REPORT
	sc	1
	b	.

	.org	0x1000
start:
	LOADI	r20, PV_DEC_FAR
	mtdec	r20
	mfspr	r19, SPRN_TIR		/* physical thread number */
	std	r19, VA_TIR(r13)
	bl	report			/* first report: "this vcpu runs guest code" */
	cmpdi	r15, PV_ROLE_CEDE_WAKER
	beq	cede_waker
	cmpdi	r15, PV_ROLE_CEDE_SLEEPER
	beq	cede_sleeper
	cmpdi	r15, PV_ROLE_DOORBELL
	beq	doorbell_send
	cmpdi	r15, PV_ROLE_EXITS
	beq	exits
	cmpdi	r15, PV_ROLE_CEDE_TIMER
	beq	cede_timer
	/* PV_ROLE_SPIN */
spin:
	mr	r20, r17
	.globl	pv_guest_spin_loop
pv_guest_spin_loop:			/* where a spinning vcpu spends its time */
	addic.	r20, r20, -1
	bne	pv_guest_spin_loop
	ld	r21, VA_ITERATIONS(r13)
	add	r21, r21, r17
	std	r21, VA_ITERATIONS(r13)
	bl	report
	b	spin

/*
 * Report hcall: counts it, re-reads TIR, exits to the VMM.  Returns the VMM's
 * answer in r3 (PV_RET_*).  Clobbers r3-r12.
 */
report:
	INC	VA_REPORTS, r5
	mfspr	r5, SPRN_TIR
	ld	r6, VA_TIR(r13)
	cmpd	r5, r6
	beq	1f
	INC	VA_TIR_CHANGES, r6
1:	li	r4, PV_KIND_PROGRESS
	LOADI	r3, PV_HCALL_REPORT
	sc	1
	blr

/* Cede until prodded; count the returns. */
cede_sleeper:
	LOADI	r20, PV_DEC_FAR		/* so a wakeup is a prod, not the decrementer */
	mtdec	r20
	li	r3, H_CEDE
	.globl	pv_guest_cede
pv_guest_cede:
	sc	1			/* KVM sets MSR[EE] and naps this thread */
	INC	VA_CEDES, r20
	bl	report
	b	cede_sleeper

/*
 * Cede with the decrementer r17 timebase ticks ahead, so that every vcpu is
 * often ceded at once and only the decrementer wakes it; a report every
 * PV_CEDES_PER_REPORT cedes.  MSR[EE] goes off before the decrementer is
 * armed: a decrementer that fires before the H_CEDE stays pending (the cede
 * returns at once) instead of being pushed far away by the 0x900 handler.
 */
cede_timer:
	li	r24, PV_CEDES_PER_REPORT
1:	li	r20, 0
	mtmsrd	r20, 1			/* MSR[EE] = 0 */
	mtdec	r17
	li	r3, H_CEDE
	sc	1			/* KVM sets MSR[EE]; the decrementer ends the nap */
	INC	VA_CEDES, r20
	addic.	r24, r24, -1
	bne	1b
	bl	report
	b	cede_timer

/* Spin a little, then H_PROD every vcpu in the mask r18. */
cede_waker:
	mr	r20, r17
1:	addic.	r20, r20, -1
	bne	1b
	ld	r21, VA_ITERATIONS(r13)
	add	r21, r21, r17
	std	r21, VA_ITERATIONS(r13)
	li	r22, 0
2:	srd	r23, r18, r22
	andi.	r23, r23, 1
	beq	3f
	li	r3, H_PROD
	mr	r4, r22
	sc	1
	INC	VA_PRODS, r23
3:	addi	r22, r22, 1
	cmpdi	r22, 64
	blt	2b
	bl	report
	b	cede_waker

/*
 * Doorbells: wait until every vcpu of the vcore has arrived (so each
 * doorbell has a receiver running guest code; the VMM ends the wait when its
 * start timeout passed, so a lone vcpu still sends), enable MSR[EE], then for each
 * sibling thread t != TIR: mark our bit in the mailbox of the vcpu that
 * should be on thread t (vcpu id - TIR + t) and msgsndp t.
 */
doorbell_send:
	LOADI	r20, PV_SHARED_BARRIER
1:	lwarx	r21, 0, r20
	addi	r21, r21, 1
	stwcx.	r21, 0, r20
	bne-	1b
2:	mr	r22, r17
3:	lwz	r21, 0(r20)
	cmpw	r21, r16
	bge	4f
	addic.	r22, r22, -1
	bne	3b
	bl	report			/* still waiting: let the VMM see us */
	cmpdi	r3, PV_RET_STOP_WAITING	/* siblings that never run (stock QEMU): send anyway */
	bne	2b
4:	li	r20, 0
	ori	r20, r20, MSR_EE
	mtmsrd	r20, 1
	li	r23, 0			/* target TIR */
5:	cmpd	r23, r19
	beq	8f
	subf	r24, r19, r14
	add	r24, r24, r23
	sldi	r24, r24, PV_AREA_SHIFT
	addis	r24, r24, PV_AREA_BASE >> 16
	addi	r24, r24, VA_MAILBOX
	li	r25, 1
	sld	r25, r25, r19
6:	ldarx	r26, 0, r24
	or	r26, r26, r25
	stdcx.	r26, 0, r24
	bne-	6b
	sync
	LOADI	r26, PV_DBELL_TYPE_SERVER
	or	r26, r26, r23
	ld	r27, VA_PROGRAM_CHECKS(r13)
	li	r21, GPA(pv_guest_after_msgsndp)	/* where a program check resumes */
	std	r21, VA_RESUME(r13)
	.globl	pv_guest_msgsndp
pv_guest_msgsndp:
	msgsndp	r26
pv_guest_after_msgsndp:
	li	r21, 0
	std	r21, VA_RESUME(r13)
	ld	r21, VA_PROGRAM_CHECKS(r13)
	cmpd	r21, r27
	beq	7f
	INC	VA_MSGSNDP_TRAPS, r21
	b	8f
7:	INC	VA_DOORBELLS_SENT, r21
8:	addi	r23, r23, 1
	cmpd	r23, r16
	blt	5b
	b	spin

/* Frequent exits to userspace: one bare hcall per iteration, a report every r17. */
exits:
	mr	r24, r17
1:	LOADI	r3, PV_HCALL_EXIT
	sc	1
	INC	VA_ITERATIONS, r20
	addic.	r24, r24, -1
	bne	1b
	bl	report
	b	exits

	.globl	pv_guest_end
pv_guest_end:
	.previous
