// A C# function: `functions-host deploy Hello.cs` compiles it (with the .NET SDK's compiler
// when `dotnet` is installed, else Mono's `mcs`, C# 7.2) and deploys the assembly.
//
// The JSON event binds to the entry's parameters by name ({"name": "Ada"}), by position
// (["Ada"]) or as the one value ("Ada"); the return value is the JSON response. Console output
// goes to the function's logs. Run it once, locally (from this file's directory):
//   functions-host run Hello.cs '{"name":"Ada"}'
// or deploy it and invoke it:
//   functions-host deploy Hello.cs && functions-host invoke Hello '{"name":"Ada"}'
using System;

public class Functions
{
    public static string Hello(string name)
    {
        Console.WriteLine($"greeting {name}");
        return $"Hello, {name}!";
    }
}
