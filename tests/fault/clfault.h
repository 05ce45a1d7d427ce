/* clfault.h: control interface of the test-only OpenCL fault-injection shim
 * (clfault.c). The shim defines the OpenCL entry points clnorm uses, forwards
 * them to the real implementation (dlsym(RTLD_NEXT)), counts them, makes a
 * chosen call fail with a realistic error, and counts live OpenCL objects. */
#ifndef CLNORM_CLFAULT_H
#define CLNORM_CLFAULT_H

#ifdef __cplusplus
extern "C" {
#endif

/* Kinds of OpenCL objects whose references the shim counts. */
enum clfault_kind {
    CLFAULT_MEM,
    CLFAULT_KERNEL,
    CLFAULT_PROGRAM,
    CLFAULT_EVENT,
    CLFAULT_QUEUE,
    CLFAULT_CONTEXT,
    CLFAULT_KIND_COUNT
};

/* Fault-eligible calls are every wrapped call except clRetain and clRelease:
 * creations, builds, kernel arguments, enqueues and info queries. They are
 * counted only while the shim is armed and not paused. */

/* Starts counting from 0; the fail_at-th eligible call (1-based) fails, and
 * with sticky every later one too. fail_at 0 only counts. Clears the record
 * of fired faults. */
void clfault_arm(long fail_at, int sticky);
/* Stops counting and injecting (the test's own OpenCL calls in between). */
void clfault_pause(void);
/* Counts and injects again after clfault_pause. */
void clfault_resume(void);
/* Stops everything; the counts of live objects are kept. */
void clfault_disarm(void);

/* Eligible calls counted since clfault_arm. */
long clfault_calls(void);
/* Name of eligible call k (1-based) since clfault_arm, or "?" beyond the
 * first 65536. */
const char *clfault_call_name(long k);
/* Number of faults injected since clfault_arm, and the first one's call. */
long        clfault_fired(void);
const char *clfault_fired_name(void);
/* The CL error the first injected fault returned. */
int clfault_fired_error(void);

/* Live references of a kind: successful creations plus retains minus
 * releases, over the whole process life (also while disarmed). */
long clfault_live(enum clfault_kind kind);
const char *clfault_kind_name(enum clfault_kind kind);

/* Removes an extension name from what clGetDeviceInfo(CL_DEVICE_EXTENSIONS)
 * reports (emulates a device without it); NULL or "" restores it. */
void clfault_hide_extension(const char *ext);

/* Whether the shim sits in front of the OpenCL library (a clGetPlatformIDs
 * from the caller's code reached it). */
int clfault_active(void);

#ifdef __cplusplus
}
#endif

#endif
