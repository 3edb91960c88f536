/*
 * pyvcore-vmm: a tiny KVM-HV VMM for the pyvcore lab (ppc64le, static).
 *
 *   pyvcore-vmm SCENARIO [HOLD_SECONDS]
 *
 * Creates one VM with one memory slot at guest physical 0 holding the
 * real-mode guest code of guest.S, creates the scenario's vcpus (ids choose
 * the vcore: with KVM_CAP_PPC_SMT = 4, ids 0-3 are vcore 0, 4-7 vcore 1),
 * runs each in its own pthread, and prints on stdout (one line each):
 *
 *   PYVCORE VMM scenario=S vcpus=ID,.. smt=N spin_pc=0x.. msgsndp_pc=0x.. cede_pc=0x..
 *   PYVCORE READY scenario=S            every vcpu has executed guest code
 *   PYVCORE STALLED scenario=S waiting=ID,..   some vcpu never ran (start timeout)
 *   PYVCORE REPORT {json}               one per vcpu, after the hold time
 *   PYVCORE DONE scenario=S status=ok|error [reason=..] vcpus=N started=N seconds=F
 *
 * HOLD_SECONDS: how long the guest keeps running after the start phase;
 * 0 = forever (until the lab is stopped).  Nothing is printed while vcpus run:
 * printing to the hvc console from vcpu threads slowed hcalls 50-fold.
 * The report JSON is documented in pyvcore/lab/guest.py.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <linux/kvm.h>

#include "layout.h"

extern const char pv_guest_start[], pv_guest_end[];
extern const char pv_guest_spin_loop[], pv_guest_msgsndp[], pv_guest_cede[];

#define GUEST_MEM_SIZE   (16UL << 20)
#define START_TIMEOUT_S  15.0   /* first report of every vcpu (seen: < 1 s at SMT4) */
#define START_TIMEOUT_SMT8_S 45.0 /* 8 TCG threads on 2 host cores: seen 15-20 s */
#define NATURAL_STOP_S   3.0    /* after the hold: wait for each vcpu's next report */
#define STOP_TIMEOUT_S   5.0    /* then kick the rest out of KVM_RUN for this long */
#define PROGRESS_TIMEOUT_S 60.0 /* after the hold: wait this long at most for a first
				   spin chunk of every spinning vcpu (8 TCG threads on
				   2 loaded host cores can leave one behind) */
#define MAX_BUSY_RETRIES 500    /* KVM_RUN EBUSY retries, 10 ms apart */
#define LPCR_ILE         0x0000000002000000UL
#define GUEST_MSR        0x8000000000001001UL   /* SF | ME | LE */
#define H_FUNCTION       (-2L)

/* struct scenario, scenarios[] (one row per name and thread count), MAX_VCPUS and
 * PV_SCENARIO_NAMES, generated from pyvcore/lab/scenarios.py at build time. */
#include "scenarios.h"

static const char *role_names[] = {
	[PV_ROLE_SPIN] = "spin", [PV_ROLE_CEDE_WAKER] = "cede-waker",
	[PV_ROLE_CEDE_SLEEPER] = "cede-sleeper", [PV_ROLE_DOORBELL] = "doorbell",
	[PV_ROLE_EXITS] = "exits", [PV_ROLE_CEDE_TIMER] = "cede-timer",
};

struct vcpu {
	int id, role, fd;
	struct kvm_run *run;
	pthread_t thread;
	volatile uint64_t *area;        /* this vcpu's counters in guest memory */
	int started, finished;
	uint64_t exits, report_hcalls, exit_hcalls, busy_retries;
	double t_first, t_last;
	char error[160];
};

static const struct scenario *sc;
static struct vcpu vcpus[MAX_VCPUS];
static int nvcpus, smt = 1;
static char *guest_mem;
static volatile int stop_requested;
static volatile int start_phase_over;   /* READY or STALLED printed */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static int n_started, n_finished, n_errors;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void say(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static const char *scenario_name = "?";

/* Fatal setup error: the one DONE line the lab waits for, then exit. */
static void fail(const char *reason, int err)
{
	if (err)
		say("PYVCORE DONE scenario=%s status=error reason=%s errno=%d(%s)",
		    scenario_name, reason, err, strerror(err));
	else
		say("PYVCORE DONE scenario=%s status=error reason=%s", scenario_name, reason);
	exit(1);
}

static uint64_t area(const struct vcpu *v, int field)
{
	return v->area[field / 8];
}

/* The cede waker keeps prodding until every sleeper has stopped. */
static int should_stop(const struct vcpu *v)
{
	if (!stop_requested)
		return 0;
	if (v->role != PV_ROLE_CEDE_WAKER)
		return 1;
	pthread_mutex_lock(&lock);
	int others_done = n_finished >= nvcpus - 1;
	pthread_mutex_unlock(&lock);
	return others_done;
}

static void vcpu_error(struct vcpu *v, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(v->error, sizeof(v->error), fmt, ap);
	va_end(ap);
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	struct kvm_run *run = v->run;

	for (;;) {
		if (ioctl(v->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				if (should_stop(v))
					break;
				continue;
			}
			/*
			 * EBUSY: the vcore runner could not grab a secondary
			 * thread in time ("KVM: couldn't grab cpu N":
			 * kvmppc_grab_hwthread gives up after 10 ms, which a
			 * loaded TCG host exceeds).  Transient: retry a while.
			 */
			if (errno == EBUSY && v->busy_retries < MAX_BUSY_RETRIES) {
				v->busy_retries++;
				usleep(10000);
				continue;
			}
			vcpu_error(v, "KVM_RUN: %s", strerror(errno));
			break;
		}
		v->exits++;
		if (run->exit_reason == KVM_EXIT_PAPR_HCALL) {
			uint64_t nr = run->papr_hcall.nr;

			run->papr_hcall.ret = PV_RET_CONTINUE;
			if (nr == PV_HCALL_REPORT) {
				if (start_phase_over)
					run->papr_hcall.ret = PV_RET_STOP_WAITING;
				v->report_hcalls++;
				v->t_last = now();
				if (!v->started) {
					v->t_first = v->t_last;
					pthread_mutex_lock(&lock);
					v->started = 1;
					n_started++;
					pthread_cond_broadcast(&changed);
					pthread_mutex_unlock(&lock);
				}
				if (run->papr_hcall.args[0] == PV_KIND_UNEXPECTED) {
					vcpu_error(v, "unexpected interrupt 0x%lx at 0x%lx",
						   (unsigned long)area(v, VA_UNEXPECTED_VEC),
						   (unsigned long)area(v, VA_UNEXPECTED_SRR0));
					break;
				}
			} else if (nr == PV_HCALL_EXIT) {
				v->exit_hcalls++;
			} else {
				run->papr_hcall.ret = H_FUNCTION;
			}
		} else if (run->exit_reason != KVM_EXIT_INTR) {
			vcpu_error(v, "exit reason %u", run->exit_reason);
			break;
		}
		if (should_stop(v))
			break;
	}
	pthread_mutex_lock(&lock);
	v->finished = 1;
	n_finished++;
	if (v->error[0])
		n_errors++;
	pthread_cond_broadcast(&changed);
	pthread_mutex_unlock(&lock);
	return NULL;
}

static void kick(int sig)
{
	(void)sig;      /* only there to make KVM_RUN return EINTR */
}

/* Wait until pred() holds or the deadline (0 = none) passes; lock held by caller. */
static int wait_until(int (*pred)(void), double deadline)
{
	while (!pred()) {
		struct timespec ts;

		if (deadline && now() >= deadline)
			return 0;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 200 * 1000 * 1000;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&changed, &lock, &ts);
	}
	return 1;
}

static int all_started(void) { return n_started == nvcpus || n_errors > 0; }
static int all_finished(void) { return n_finished == nvcpus; }
static int any_error(void) { return n_errors > 0; }

/*
 * Every vcpu that spins has finished at least one chunk (VA_ITERATIONS > 0),
 * every cede-timer vcpu has come back from one H_CEDE (VA_CEDES > 0).
 */
static int all_progressed(void)
{
	if (n_errors > 0)
		return 1;
	for (int i = 0; i < nvcpus; i++)
		if ((vcpus[i].role == PV_ROLE_SPIN || vcpus[i].role == PV_ROLE_CEDE_WAKER) &&
		    !vcpus[i].finished && area(&vcpus[i], VA_ITERATIONS) == 0)
			return 0;
		else if (vcpus[i].role == PV_ROLE_CEDE_TIMER && !vcpus[i].finished &&
			 area(&vcpus[i], VA_CEDES) == 0)
			return 0;
	return 1;
}

static void print_id_list(char *buf, size_t len, int want_started)
{
	size_t off = 0;

	buf[0] = 0;
	for (int i = 0; i < nvcpus && off < len; i++)
		if (vcpus[i].started == want_started)
			off += snprintf(buf + off, len - off, "%s%d", off ? "," : "", vcpus[i].id);
}

static void print_report(const struct vcpu *v)
{
	char woken[64] = "", json_err[200] = "null";
	uint64_t mask = area(v, VA_WOKEN_BY);
	size_t off = 0;
	int vcore = v->id / smt;

	for (int t = 0; t < 64; t++)
		if (mask & (1UL << t))
			off += snprintf(woken + off, sizeof(woken) - off, "%s%d", off ? "," : "", t);
	if (v->error[0])
		snprintf(json_err, sizeof(json_err), "\"%s\"", v->error);
#define U(field) (unsigned long)area(v, field)
	printf("PYVCORE REPORT {\"scenario\":\"%s\",\"vcpu\":%d,\"vcore\":%d,\"first_vcpuid\":%d,"
	       "\"role\":\"%s\",\"started\":%s,\"finished\":%s,",
	       sc->name, v->id, vcore, vcore * smt, role_names[v->role],
	       v->started ? "true" : "false", v->finished ? "true" : "false");
	if (v->started)
		printf("\"tir\":%lu,", U(VA_TIR));
	else
		printf("\"tir\":null,");
	printf("\"tir_changes\":%lu,\"iterations\":%lu,\"reports\":%lu,\"exits\":%lu,"
	       "\"hcalls\":%lu,\"decrementers\":%lu,\"cedes\":%lu,\"prods\":%lu,"
	       "\"doorbells_sent\":%lu,\"doorbells_received\":%lu,\"woken_by\":[%s],"
	       "\"msgsndp_traps\":%lu,\"program_checks\":%lu,",
	       U(VA_TIR_CHANGES), U(VA_ITERATIONS), (unsigned long)v->report_hcalls,
	       (unsigned long)v->exits, (unsigned long)(v->report_hcalls + v->exit_hcalls),
	       U(VA_DECREMENTERS), U(VA_CEDES), U(VA_PRODS), U(VA_DOORBELLS_SENT),
	       U(VA_DOORBELLS), woken, U(VA_MSGSNDP_TRAPS), U(VA_PROGRAM_CHECKS));
	if (area(v, VA_PROGRAM_CHECKS))
		printf("\"program_check_pc\":%lu,\"program_check_srr1\":%lu,",
		       U(VA_PROGRAM_SRR0), U(VA_PROGRAM_SRR1));
	else
		printf("\"program_check_pc\":null,\"program_check_srr1\":null,");
	printf("\"msgsndp_pc\":%lu,", (unsigned long)(pv_guest_msgsndp - pv_guest_start));
	if (area(v, VA_UNEXPECTED_VEC))
		printf("\"unexpected_vector\":%lu,\"unexpected_pc\":%lu,",
		       U(VA_UNEXPECTED_VEC), U(VA_UNEXPECTED_SRR0));
	else
		printf("\"unexpected_vector\":null,\"unexpected_pc\":null,");
	printf("\"busy_retries\":%lu,\"seconds\":%.3f,\"error\":%s}\n",
	       (unsigned long)v->busy_retries, v->started ? v->t_last - v->t_first : 0.0, json_err);
#undef U
}

static void setup_vcpu(int kvm_vm, struct vcpu *v, long run_size)
{
	struct kvm_enable_cap papr = { .cap = KVM_CAP_PPC_PAPR };
	struct kvm_regs regs;

	v->fd = ioctl(kvm_vm, KVM_CREATE_VCPU, (unsigned long)v->id);
	if (v->fd < 0)
		fail("create-vcpu", errno);
	if (ioctl(v->fd, KVM_ENABLE_CAP, &papr) < 0)
		fail("enable-papr", errno);
	v->run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	if (v->run == MAP_FAILED)
		fail("mmap-kvm-run", errno);
	if (ioctl(v->fd, KVM_GET_REGS, &regs) < 0)
		fail("get-regs", errno);
	regs.pc = 0;
	regs.msr = GUEST_MSR;
	regs.gpr[13] = PV_AREA_BASE + ((uint64_t)v->id << PV_AREA_SHIFT);
	regs.gpr[14] = v->id;
	regs.gpr[15] = v->role;
	regs.gpr[16] = smt;
	regs.gpr[17] = sc->spin;
	regs.gpr[18] = 0;
	if (v->role == PV_ROLE_CEDE_WAKER)
		for (int i = 0; i < nvcpus; i++)
			if (sc->roles[i] == PV_ROLE_CEDE_SLEEPER)
				regs.gpr[18] |= 1UL << sc->ids[i];
	if (ioctl(v->fd, KVM_SET_REGS, &regs) < 0)
		fail("set-regs", errno);
	v->area = (volatile uint64_t *)(guest_mem + regs.gpr[13]);
}

/* Interrupts little-endian: KVM applies LPCR[ILE] only to vcpus that exist. */
static void set_ile(struct vcpu *v)
{
	uint64_t lpcr;
	struct kvm_one_reg reg = { .id = KVM_REG_PPC_LPCR_64, .addr = (uintptr_t)&lpcr };

	if (ioctl(v->fd, KVM_GET_ONE_REG, &reg) < 0)
		fail("get-lpcr", errno);
	lpcr |= LPCR_ILE;
	if (ioctl(v->fd, KVM_SET_ONE_REG, &reg) < 0)
		fail("set-lpcr", errno);
}

int main(int argc, char **argv)
{
	struct kvm_userspace_memory_region slot = { 0 };
	struct sigaction sa = { .sa_handler = kick };
	char ids[64];
	double hold, start_timeout, t0, deadline;
	int kvm, vm;
	long run_size;

	if (argc < 2 || argc > 4) {
		fprintf(stderr, "usage: %s SCENARIO [HOLD_SECONDS [START_TIMEOUT_SECONDS]]\n", argv[0]);
		return 2;
	}
	scenario_name = argv[1];
	for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++)
		if (!strcmp(scenarios[i].name, argv[1]))
			sc = &scenarios[i];
	if (!sc) {
		say("PYVCORE DONE scenario=%s status=error reason=unknown-scenario "
		    "known=" PV_SCENARIO_NAMES, argv[1]);
		return 2;
	}
	hold = argc >= 3 ? strtod(argv[2], NULL) : 2.0;
	if (hold < 0)
		fail("bad-hold", 0);
	/* 0 or absent: the default for the thread count (below). */
	start_timeout = argc == 4 ? strtod(argv[3], NULL) : 0.0;
	if (start_timeout < 0)
		fail("bad-start-timeout", 0);

	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		fail("open-dev-kvm", errno);
	vm = ioctl(kvm, KVM_CREATE_VM, KVM_VM_PPC_HV);
	if (vm < 0)
		fail("create-vm-hv", errno);
	smt = ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_PPC_SMT);
	if (smt < 1)
		smt = 1;
	/* The scenario's row for this many threads per vcore. */
	sc = NULL;
	for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++)
		if (!strcmp(scenarios[i].name, scenario_name) && scenarios[i].threads == smt)
			sc = &scenarios[i];
	if (!sc) {
		say("PYVCORE DONE scenario=%s status=error reason=no-ids-for-smt smt=%d",
		    scenario_name, smt);
		return 2;
	}
	run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (run_size <= 0)
		fail("vcpu-mmap-size", errno);

	guest_mem = mmap(NULL, GUEST_MEM_SIZE, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (guest_mem == MAP_FAILED)
		fail("mmap-guest", errno);
	memcpy(guest_mem, pv_guest_start, pv_guest_end - pv_guest_start);
	slot.slot = 0;
	slot.guest_phys_addr = 0;
	slot.memory_size = GUEST_MEM_SIZE;
	slot.userspace_addr = (uintptr_t)guest_mem;
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &slot) < 0)
		fail("set-memory", errno);

	nvcpus = sc->nvcpus;
	for (int i = 0; i < nvcpus; i++) {
		vcpus[i].id = sc->ids[i];
		vcpus[i].role = sc->roles[i];
		setup_vcpu(vm, &vcpus[i], run_size);
	}
	for (int i = 0; i < nvcpus; i++)
		set_ile(&vcpus[i]);

	sigaction(SIGUSR1, &sa, NULL);
	for (int i = 0, off = 0; i < nvcpus; i++)
		off += snprintf(ids + off, sizeof(ids) - off, "%s%d", i ? "," : "", vcpus[i].id);
	if (start_timeout == 0)
		start_timeout = smt > 4 ? START_TIMEOUT_SMT8_S : START_TIMEOUT_S;
	say("PYVCORE VMM scenario=%s vcpus=%s smt=%d hold=%g spin_pc=0x%lx msgsndp_pc=0x%lx cede_pc=0x%lx "
	    "start_timeout=%g",
	    sc->name, ids, smt, hold,
	    (unsigned long)(pv_guest_spin_loop - pv_guest_start),
	    (unsigned long)(pv_guest_msgsndp - pv_guest_start),
	    (unsigned long)(pv_guest_cede - pv_guest_start), start_timeout);

	t0 = now();
	for (int i = 0; i < nvcpus; i++)
		if (pthread_create(&vcpus[i].thread, NULL, vcpu_thread, &vcpus[i]))
			fail("pthread-create", errno);

	pthread_mutex_lock(&lock);
	wait_until(all_started, t0 + start_timeout);
	if (n_started == nvcpus) {
		say("PYVCORE READY scenario=%s", sc->name);
	} else {
		print_id_list(ids, sizeof(ids), 0);
		say("PYVCORE STALLED scenario=%s waiting=%s", sc->name, ids);
	}
	start_phase_over = 1;
	/* Hold: keep the guest running (hold 0 = until the machine stops). */
	deadline = hold > 0 ? now() + hold : 0;
	wait_until(any_error, deadline);
	/* A report per vcpu that says it ran: a spinning vcpu has done one chunk. */
	if (n_started == nvcpus)
		wait_until(all_progressed, now() + PROGRESS_TIMEOUT_S);
	stop_requested = 1;
	/*
	 * Spinning vcpus stop at their next report (so each reports its last
	 * chunk); after NATURAL_STOP_S kick those that are not exiting.
	 */
	wait_until(all_finished, now() + NATURAL_STOP_S);
	deadline = now() + STOP_TIMEOUT_S;
	while (!all_finished() && now() < deadline) {
		wait_until(all_finished, now() + 0.5);
		for (int i = 0; i < nvcpus; i++)
			if (!vcpus[i].finished && vcpus[i].role != PV_ROLE_CEDE_WAKER)
				pthread_kill(vcpus[i].thread, SIGUSR1);
		if (n_finished == nvcpus - 1)
			for (int i = 0; i < nvcpus; i++)
				if (!vcpus[i].finished)
					pthread_kill(vcpus[i].thread, SIGUSR1);
	}
	pthread_mutex_unlock(&lock);

	for (int i = 0; i < nvcpus; i++)
		print_report(&vcpus[i]);
	fflush(stdout);

	{
		const char *reason = NULL;

		if (n_errors)
			reason = "vcpu-error";
		else if (n_started < nvcpus)
			reason = "stalled";
		else if (n_finished < nvcpus)
			reason = "vcpus-did-not-stop";
		if (reason) {
			print_id_list(ids, sizeof(ids), 0);
			say("PYVCORE DONE scenario=%s status=error reason=%s vcpus=%d started=%d "
			    "never_ran=%s seconds=%.3f", sc->name, reason, nvcpus, n_started,
			    ids[0] ? ids : "none", now() - t0);
		} else {
			say("PYVCORE DONE scenario=%s status=ok vcpus=%d started=%d seconds=%.3f",
			    sc->name, nvcpus, n_started, now() - t0);
		}
		/* Threads still inside KVM_RUN die with the process. */
		_exit(reason ? 1 : 0);
	}
}
