// LayerSec.Probe.exe: loads liblayersec and prints its version (exit 0), or the exception that
// says why it cannot (exit 3). ErrorTests.MissingLibraryGivesAClearError runs it with a bad
// LD_LIBRARY_PATH.
using System;
using LayerSecurity;

static class Probe
{
    static int Main()
    {
        try
        {
            Console.WriteLine("version " + LayerSec.Version);
            return 0;
        }
        catch (DllNotFoundException e)
        {
            Console.WriteLine(e.GetType().Name + ": " + e.Message);
            return 3;
        }
    }
}
