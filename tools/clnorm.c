/* clnorm.c: the clnorm command-line program: lists devices, checks every
 * operation against the C reference, and runs ONNX operators on .npy files.
 * Subcommands live in cli_*.c; this file dispatches and lists devices. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_main[] =
    "usage: clnorm COMMAND [OPTIONS]\n"
    "\n"
    "Normalization layers (batch, layer, RMS, group, instance norm) as OpenCL\n"
    "kernels, on any OpenCL device.\n"
    "\n"
    "Commands:\n"
    "  devices  list the OpenCL platforms and devices, and the one clnorm picks\n"
    "  check    run every operation on a device against the C reference\n"
    "  run      run one ONNX normalization operator on .npy files\n"
    "  tune     measure the kernel variants on a device and remember the fastest\n"
    "  bench    benchmark every operation against the device's copy bandwidth\n"
    "  help     show this text, or `clnorm help COMMAND` for one command\n"
    "\n"
    "Options:\n"
    "  --version  print the library version and exit\n"
    "  --help     show this text and exit\n"
    "\n"
    "A device is chosen by --device SEL, else by $CLNORM_DEVICE, else the first\n"
    "GPU, else the first device. SEL is P:D (platform and device index), D (the\n"
    "flat index that `clnorm devices` shows) or a case-insensitive substring of\n"
    "the device name. Built programs are cached in $CLNORM_CACHE_DIR (default\n"
    "$XDG_CACHE_HOME/clnorm or ~/.cache/clnorm; CLNORM_CACHE=0 turns it off).\n"
    "\n"
    "Exit status: 0 success; 1 error (no device, a bad file, name, attribute or\n"
    "shape, a failed check); 2 malformed command line (unknown command or\n"
    "option, an option without its value).\n";

static const char usage_devices[] =
    "usage: clnorm devices [--device SEL]\n"
    "\n"
    "Lists every OpenCL platform and device the ICD loader finds: indices (P:D\n"
    "and the flat index), name, type, compute units, global and local memory,\n"
    "fp64 and fp16 support, and the device clnorm picks by default and why\n"
    "(or the one SEL picks with --device). Exits 1 when there is no device or\n"
    "the selector matches none.\n";

static void print_size(char *out, size_t len, cl_ulong bytes)
{
    const double k = 1024.0;
    if (bytes >= (cl_ulong)(k * k * k))
        snprintf(out, len, "%.1f GiB", (double)bytes / (k * k * k));
    else if (bytes >= (cl_ulong)(k * k))
        snprintf(out, len, "%.1f MiB", (double)bytes / (k * k));
    else
        snprintf(out, len, "%.0f KiB", (double)bytes / k);
}

static const char *type_name(cl_device_type t)
{
    if (t & CL_DEVICE_TYPE_GPU)
        return "GPU";
    if (t & CL_DEVICE_TYPE_CPU)
        return "CPU";
    if (t & CL_DEVICE_TYPE_ACCELERATOR)
        return "accelerator";
    if (t & CL_DEVICE_TYPE_CUSTOM)
        return "custom";
    return "other";
}

#define MAX_PLATFORMS 16 /* the library's selector looks at as many */
#define MAX_DEVICES 64

int cli_devices(int argc, char **argv)
{
    const char *selector = NULL;
    for (int i = 1; i < argc; ++i) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(usage_devices, stdout);
            return CLI_EXIT_OK;
        } else if (!strcmp(argv[i], "--device") && i + 1 < argc) {
            selector = argv[++i];
        } else if (!strncmp(argv[i], "--device=", 9)) {
            selector = argv[i] + 9;
        } else {
            cli_error("devices: unexpected argument '%s' (see clnorm devices --help)", argv[i]);
            return CLI_EXIT_USAGE;
        }
    }

    cl_platform_id plats[MAX_PLATFORMS];
    cl_uint        nplat = 0;
    cl_int         err   = clGetPlatformIDs(MAX_PLATFORMS, plats, &nplat);
    if (err == -1001 /* CL_PLATFORM_NOT_FOUND_KHR */ || (err == CL_SUCCESS && nplat == 0)) {
        cli_error("no OpenCL platform found: is an OpenCL driver and its ICD file installed "
                  "(e.g. pocl-opencl-icd; see /etc/OpenCL/vendors)?");
        return CLI_EXIT_FAIL;
    }
    if (err != CL_SUCCESS) {
        cli_error("clGetPlatformIDs failed: %s", clnorm_status_name((clnorm_status)err));
        return CLI_EXIT_FAIL;
    }
    if (nplat > MAX_PLATFORMS)
        nplat = MAX_PLATFORMS;

    cl_device_id  pick     = NULL;
    char          why[256] = "";
    clnorm_status pst      = clnorm_select_device(selector, NULL, &pick, why, sizeof why);
    unsigned      flat = 0, pick_flat = 0, pick_p = 0, pick_d = 0;
    char          pick_name[256] = "";

    for (cl_uint p = 0; p < nplat; ++p) {
        char pname[256] = "", pver[256] = "";
        clGetPlatformInfo(plats[p], CL_PLATFORM_NAME, sizeof pname - 1, pname, NULL);
        clGetPlatformInfo(plats[p], CL_PLATFORM_VERSION, sizeof pver - 1, pver, NULL);
        printf("Platform %u: %s (%s)\n", p, pname, pver);
        cl_device_id devs[MAX_DEVICES];
        cl_uint      nd = 0;
        err             = clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, MAX_DEVICES, devs, &nd);
        if (err != CL_SUCCESS || nd == 0) {
            printf("  (no devices%s%s)\n", err != CL_SUCCESS && err != CL_DEVICE_NOT_FOUND ? ": " : "",
                   err != CL_SUCCESS && err != CL_DEVICE_NOT_FOUND ? clnorm_status_name((clnorm_status)err)
                                                                   : "");
            continue;
        }
        if (nd > MAX_DEVICES)
            nd = MAX_DEVICES;
        for (cl_uint d = 0; d < nd && flat < MAX_DEVICES; ++d, ++flat) {
            clnorm_device_info info;
            int                is_pick = pst == CLNORM_SUCCESS && devs[d] == pick;
            if (clnorm_query_device(devs[d], &info) != CLNORM_SUCCESS) {
                printf("  %c %u:%u  #%u  (cannot query: %s)\n", is_pick ? '*' : ' ', p, d, flat,
                       clnorm_last_error(NULL));
                continue;
            }
            char gmem[32], lmem[32];
            print_size(gmem, sizeof gmem, info.global_mem_size);
            print_size(lmem, sizeof lmem, info.local_mem_size);
            printf("  %c %u:%u  #%u  %s\n", is_pick ? '*' : ' ', p, d, flat, info.name);
            printf("          type %s, %u compute units, %s global memory, %s local memory,\n",
                   type_name(info.type), info.compute_units, gmem, lmem);
            printf("          max work-group %zu, fp64 %s, fp16 %s, driver %s\n", info.max_work_group_size,
                   info.has_fp64 ? "yes" : "no", info.has_fp16 ? "yes" : "no", info.driver_version);
            if (is_pick) {
                pick_flat = flat;
                pick_p    = p;
                pick_d    = d;
                snprintf(pick_name, sizeof pick_name, "%s", info.name);
            }
        }
    }
    if (flat == 0) {
        cli_error("no OpenCL device found on %u platform(s)", (unsigned)nplat);
        return CLI_EXIT_FAIL;
    }
    printf("\n");
    if (pst != CLNORM_SUCCESS) {
        cli_error("%s", clnorm_last_error(NULL));
        return CLI_EXIT_FAIL;
    }
    printf("%s device: %u:%u #%u %s (%s)\n", selector ? "Selected" : "Default", pick_p, pick_d, pick_flat,
           pick_name, why);
    return CLI_EXIT_OK;
}

static int help(const char *topic)
{
    if (!topic) {
        fputs(usage_main, stdout);
        return CLI_EXIT_OK;
    }
    char *argv[] = {(char *)topic, (char *)"--help", NULL};
    if (!strcmp(topic, "devices"))
        return cli_devices(2, argv);
    if (!strcmp(topic, "check"))
        return cli_check(2, argv);
    if (!strcmp(topic, "run"))
        return cli_run(2, argv);
    if (!strcmp(topic, "tune"))
        return cli_tune(2, argv);
    if (!strcmp(topic, "bench"))
        return cli_bench(2, argv);
    if (!strcmp(topic, "help")) {
        fputs(usage_main, stdout);
        return CLI_EXIT_OK;
    }
    cli_error("help: unknown command '%s' (commands: devices, check, run, tune, bench, help)", topic);
    return CLI_EXIT_USAGE;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage_main, stderr);
        return CLI_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        printf("clnorm %s\n", clnorm_version_string());
        return CLI_EXIT_OK;
    }
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h"))
        return help(NULL);
    if (!strcmp(cmd, "help"))
        return help(argc > 2 ? argv[2] : NULL);
    if (!strcmp(cmd, "devices"))
        return cli_devices(argc - 1, argv + 1);
    if (!strcmp(cmd, "check"))
        return cli_check(argc - 1, argv + 1);
    if (!strcmp(cmd, "run"))
        return cli_run(argc - 1, argv + 1);
    if (!strcmp(cmd, "tune"))
        return cli_tune(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench"))
        return cli_bench(argc - 1, argv + 1);
    cli_error("unknown command '%s' (commands: devices, check, run, tune, bench, help; see clnorm --help)",
              cmd);
    return CLI_EXIT_USAGE;
}
