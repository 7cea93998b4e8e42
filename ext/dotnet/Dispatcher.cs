// functions-host's dispatcher for C# functions: the one piece of managed code the host calls.
// The CLI compiles it beside each function (C# 7.2, so that mcs can) into
// FunctionsHost.Dispatcher.dll; ext/dotnet/boot.js calls Invoke through the runtime's
// mono_wasm_invoke_jsexport, which passes one pointer: to seven 32-bit words in linear memory,
//   [0] the operation: 1 bind the entry, 2 call it, 3 ask for a pending call's result,
//       4 set environment variables, 5 call another public static method of the entry's class,
//       6 load an assembly (into a runtime restored from a snapshot made without it),
//       7 say which protocol this is (Protocol: boot.js checks it)
//   [1] [2] its input (UTF-8; for 6 the assembly's bytes) at, and its length (for 3: the
//       pending call's id)
//   [5] [6] the answer (UTF-8 JSON, written here; the caller frees it with free) at, and length
// Answers: {"ok":VALUE} | {"pending":ID} | {"error":{"type","message","stack","bad_event"}}.
// System.Text.Json is reached by reflection: mcs compiles against Mono's class library, which
// has none, while the runtime has .NET 10's.
using System;
using System.Collections;
using System.Collections.Generic;
using System.Reflection;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading.Tasks;

namespace FunctionsHost
{
    public static class Dispatcher
    {
        // The version of the operations above: boot.js refuses a dispatcher of another one (one
        // compiled by a CLI of another version than the host's).
        const int Protocol = 1;

        static MethodInfo entry;
        static MethodInfo deserialize;
        static MethodInfo serialize;
        static object options;
        static readonly Dictionary<int, string> finished = new Dictionary<int, string>();
        static int lastPending;

        public static unsafe void Invoke(int* words)
        {
            string answer;
            try
            {
                switch (words[0])
                {
                    case 1: answer = Bind(Text(words[1], words[2])); break;
                    case 2: answer = Call(entry, Text(words[1], words[2])); break;
                    case 3: answer = Pending(words[1]); break;
                    case 4: answer = SetEnvironment(Text(words[1], words[2])); break;
                    case 5: answer = CallMethod(Text(words[1], words[2])); break;
                    case 6: answer = LoadAssembly(Bytes(words[1], words[2])); break;
                    case 7: answer = "{\"ok\":" + Protocol + "}"; break;
                    default: throw new ArgumentException("no operation " + words[0]);
                }
            }
            catch (Exception e)
            {
                answer = Error(e);
            }
            byte[] bytes = Encoding.UTF8.GetBytes(answer);
            IntPtr at = Marshal.AllocHGlobal(bytes.Length + 1);
            Marshal.Copy(bytes, 0, at, bytes.Length);
            words[5] = (int)at;
            words[6] = bytes.Length;
        }

        static byte[] Bytes(int at, int length)
        {
            byte[] bytes = new byte[length];
            if (length > 0) Marshal.Copy((IntPtr)at, bytes, 0, length);
            return bytes;
        }

        static string Text(int at, int length)
        {
            return Encoding.UTF8.GetString(Bytes(at, length));
        }

        // Assemblies loaded from bytes, by name: found by Bind, and by the runtime when one
        // refers to another.
        static readonly Dictionary<string, Assembly> loaded = new Dictionary<string, Assembly>();

        static string LoadAssembly(byte[] bytes)
        {
            if (loaded.Count == 0)
            {
                AppDomain.CurrentDomain.AssemblyResolve += (sender, args) =>
                {
                    Assembly found;
                    return loaded.TryGetValue(new AssemblyName(args.Name).Name, out found) ? found : null;
                };
            }
            Assembly assembly = Assembly.Load(bytes);
            loaded[assembly.GetName().Name] = assembly;
            return "{\"ok\":" + Quote(assembly.GetName().Name) + "}";
        }

        // "Assembly|Class.Method", or "Assembly|" for the assembly's only public static method:
        // answers the entry's name and parameters, for boot.js to bind events to.
        static string Bind(string input)
        {
            Json();
            int bar = input.IndexOf('|');
            string name = input.Substring(0, bar);
            Assembly assembly;
            if (!loaded.TryGetValue(name, out assembly)) assembly = Assembly.Load(new AssemblyName(name));
            string wanted = input.Substring(bar + 1);
            entry = wanted.Length == 0 ? OnlyEntry(assembly) : Named(assembly, wanted);
            StringBuilder json = new StringBuilder("{\"ok\":{\"entry\":");
            json.Append(Quote(entry.DeclaringType.FullName + "." + entry.Name)).Append(",\"parameters\":[");
            ParameterInfo[] parameters = entry.GetParameters();
            for (int i = 0; i < parameters.Length; i++)
            {
                Type type = parameters[i].ParameterType;
                Type inner = Nullable.GetUnderlyingType(type);
                bool optional = parameters[i].IsOptional || inner != null;
                if (i > 0) json.Append(',');
                json.Append("{\"name\":").Append(Quote(parameters[i].Name))
                    .Append(",\"kind\":").Append(Quote(Kind(inner ?? type)))
                    .Append(",\"optional\":").Append(optional ? "true" : "false").Append('}');
            }
            json.Append("],\"methods\":[");
            List<string> methods = PublicMethods(entry.DeclaringType);
            for (int i = 0; i < methods.Count; i++)
            {
                if (i > 0) json.Append(',');
                json.Append(Quote(methods[i]));
            }
            return json.Append("]}}").ToString();
        }

        // The names of a class's public static methods, each once: what other functions may
        // call through a binding.
        static List<string> PublicMethods(Type type)
        {
            List<string> names = new List<string>();
            foreach (MethodInfo method in type.GetMethods(BindingFlags.Public | BindingFlags.Static))
            {
                if (!method.IsSpecialName && !names.Contains(method.Name)) names.Add(method.Name);
            }
            return names;
        }

        // A JSON object of names and values (each a string, or null to remove one).
        static string SetEnvironment(string input)
        {
            Json();
            Dictionary<string, string> variables = (Dictionary<string, string>)deserialize.Invoke(
                null, new object[] { input, typeof(Dictionary<string, string>), options });
            foreach (KeyValuePair<string, string> variable in variables)
            {
                Environment.SetEnvironmentVariable(variable.Key, variable.Value);
            }
            return "{\"ok\":null}";
        }

        // "Method|" and the arguments as Call takes them: a public static method of the entry's
        // class (one of that name), called as another function's binding calls it.
        static string CallMethod(string input)
        {
            if (entry == null) throw new InvalidOperationException("no entry is bound");
            int bar = input.IndexOf('|');
            string name = input.Substring(0, bar);
            MethodInfo found = null;
            foreach (MethodInfo method in entry.DeclaringType.GetMethods(BindingFlags.Public | BindingFlags.Static))
            {
                if (method.Name != name || method.IsSpecialName) continue;
                if (found != null) throw new ArgumentException(name + " is overloaded: a binding calls one method of a name");
                found = method;
            }
            if (found == null) throw new MissingMethodException(entry.DeclaringType.FullName + " has no public static method " + name);
            return Call(found, input.Substring(bar + 1));
        }

        static MethodInfo OnlyEntry(Assembly assembly)
        {
            List<MethodInfo> found = new List<MethodInfo>();
            foreach (Type type in assembly.GetExportedTypes())
            {
                foreach (MethodInfo method in type.GetMethods(BindingFlags.Public | BindingFlags.Static | BindingFlags.DeclaredOnly))
                {
                    if (!method.IsSpecialName) found.Add(method);
                }
            }
            if (found.Count == 1) return found[0];
            List<string> names = new List<string>();
            foreach (MethodInfo method in found) names.Add(method.DeclaringType.FullName + "." + method.Name);
            throw new ArgumentException(found.Count == 0
                ? "the assembly has no public static method to call"
                : "the assembly has " + found.Count + " public static methods (" + string.Join(", ", names.ToArray()) + "): name one with --entry Class.Method");
        }

        static MethodInfo Named(Assembly assembly, string name)
        {
            int dot = name.LastIndexOf('.');
            if (dot <= 0) throw new ArgumentException("the entry " + name + " is not Class.Method");
            Type type = assembly.GetType(name.Substring(0, dot), false);
            if (type == null) throw new ArgumentException("the assembly has no public class " + name.Substring(0, dot));
            MethodInfo found = null;
            foreach (MethodInfo method in type.GetMethods(BindingFlags.Public | BindingFlags.Static))
            {
                if (method.Name != name.Substring(dot + 1)) continue;
                if (found != null) throw new ArgumentException(name + " is overloaded: one method of that name can be the entry");
                found = method;
            }
            if (found == null) throw new ArgumentException(type.FullName + " has no public static method " + name.Substring(dot + 1));
            return found;
        }

        static string Kind(Type type)
        {
            if (type == typeof(string) || type == typeof(char) || type == typeof(Guid) || type == typeof(DateTime)) return "string";
            if (type == typeof(bool)) return "bool";
            if (type.IsPrimitive || type == typeof(decimal) || type.IsEnum) return "number";
            if (typeof(IDictionary).IsAssignableFrom(type) || IsGeneric(type, typeof(IDictionary<,>))) return "object";
            if (typeof(IEnumerable).IsAssignableFrom(type)) return "array";
            return "object";
        }

        static bool IsGeneric(Type type, Type definition)
        {
            foreach (Type face in type.GetInterfaces())
            {
                if (face.IsGenericType && face.GetGenericTypeDefinition() == definition) return true;
            }
            return type.IsGenericType && type.GetGenericTypeDefinition() == definition;
        }

        // A JSON array of the arguments, each the JSON text of one (null: left out).
        static string Call(MethodInfo method, string input)
        {
            if (method == null) throw new InvalidOperationException("no entry is bound");
            ParameterInfo[] parameters = method.GetParameters();
            string[] texts = (string[])deserialize.Invoke(null, new object[] { input, typeof(string[]), options });
            object[] values = new object[parameters.Length];
            for (int i = 0; i < parameters.Length; i++)
            {
                string text = texts != null && i < texts.Length ? texts[i] : null;
                if (text == null)
                {
                    values[i] = parameters[i].HasDefaultValue ? parameters[i].DefaultValue : null;
                    continue;
                }
                try
                {
                    values[i] = deserialize.Invoke(null, new object[] { text, parameters[i].ParameterType, options });
                }
                catch (TargetInvocationException e)
                {
                    // A value the parameter's type cannot take is the event's fault; a type
                    // System.Text.Json cannot make at all is the function's.
                    if (!IsJsonException(e.InnerException)) return Error(e.InnerException);
                    return BadEvent(parameters[i].Name + ": " + e.InnerException.Message);
                }
            }
            object result;
            try
            {
                result = method.Invoke(null, values);
            }
            catch (TargetInvocationException e)
            {
                return Error(e.InnerException);
            }
            Task task = result as Task;
            if (task == null) return Ok(result, method.ReturnType);
            if (task.IsCompleted) return Outcome(task, method);
            int id = ++lastPending;
            task.ContinueWith(done =>
            {
                try { finished[id] = Outcome(done, method); }
                catch (Exception e) { finished[id] = Error(e); }
            }, TaskContinuationOptions.ExecuteSynchronously);
            return "{\"pending\":" + id + "}";
        }

        static bool IsJsonException(Exception e)
        {
            for (Type type = e.GetType(); type != null; type = type.BaseType)
            {
                if (type.FullName == "System.Text.Json.JsonException") return true;
            }
            return false;
        }

        static string Pending(int id)
        {
            string answer;
            if (!finished.TryGetValue(id, out answer)) return "{\"pending\":" + id + "}";
            finished.Remove(id);
            return answer;
        }

        static string Outcome(Task task, MethodInfo method)
        {
            if (task.IsFaulted) return Error(task.Exception.InnerException ?? task.Exception);
            if (task.IsCanceled) return Error(new TaskCanceledException(task));
            PropertyInfo result = task.GetType().GetProperty("Result");
            bool valued = result != null && method.ReturnType.IsGenericType;
            return valued ? Ok(result.GetValue(task, null), result.PropertyType) : "{\"ok\":null}";
        }

        static string Ok(object value, Type type)
        {
            if (type == typeof(void)) return "{\"ok\":null}";
            return "{\"ok\":" + (string)serialize.Invoke(null, new object[] { value, type, options }) + "}";
        }

        static string BadEvent(string message)
        {
            return "{\"error\":{\"type\":\"ArgumentException\",\"message\":" + Quote(message) + ",\"stack\":\"\",\"bad_event\":true}}";
        }

        static string Error(Exception e)
        {
            while ((e is TargetInvocationException || e is TypeInitializationException || e is AggregateException) && e.InnerException != null)
            {
                e = e.InnerException;
            }
            return "{\"error\":{\"type\":" + Quote(e.GetType().FullName) + ",\"message\":" + Quote(e.Message)
                + ",\"stack\":" + Quote(OwnFrames(e.StackTrace ?? "")) + "}}";
        }

        // The frames of a stack down to the function's own, without the reflection and
        // dispatching that called it.
        static string OwnFrames(string stack)
        {
            List<string> kept = new List<string>();
            foreach (string line in stack.Split('\n'))
            {
                string frame = line.Trim();
                if (frame.StartsWith("at System.Reflection.") || frame.StartsWith("at FunctionsHost.Dispatcher.")) break;
                kept.Add(line.TrimEnd('\r'));
            }
            return string.Join("\n", kept.ToArray());
        }

        // System.Text.Json's serializer, found once (and used once, so that the snapshot holds
        // it warm): properties bound case-insensitively, fields included, as C# users expect.
        static void Json()
        {
            if (serialize != null) return;
            Type serializer = Type.GetType("System.Text.Json.JsonSerializer, System.Text.Json", true);
            Type optionsType = Type.GetType("System.Text.Json.JsonSerializerOptions, System.Text.Json", true);
            options = Activator.CreateInstance(optionsType);
            optionsType.GetProperty("PropertyNameCaseInsensitive").SetValue(options, true, null);
            optionsType.GetProperty("IncludeFields").SetValue(options, true, null);
            foreach (MethodInfo method in serializer.GetMethods(BindingFlags.Public | BindingFlags.Static))
            {
                ParameterInfo[] p = method.GetParameters();
                if (method.IsGenericMethodDefinition || p.Length != 3 || p[1].ParameterType != typeof(Type) || p[2].ParameterType != optionsType) continue;
                if (method.Name == "Deserialize" && p[0].ParameterType == typeof(string)) deserialize = method;
                if (method.Name == "Serialize" && p[0].ParameterType == typeof(object)) serialize = method;
            }
            if (deserialize == null || serialize == null) throw new MissingMethodException("System.Text.Json's JsonSerializer");
            deserialize.Invoke(null, new object[] { "[\"1\"]", typeof(string[]), options });
            serialize.Invoke(null, new object[] { new Dictionary<string, object> { { "warm", 1 } }, typeof(object), options });
            // Console's writers made and their path run once (writing nothing): a snapshot
            // holds them ready for a function's first line.
            Console.Out.Write(string.Empty);
            Console.Error.Write(string.Empty);
            string.Format("{0} {1}", "warm", 1);
        }

        static string Quote(string text)
        {
            StringBuilder quoted = new StringBuilder("\"");
            foreach (char c in text)
            {
                if (c == '"' || c == '\\') quoted.Append('\\').Append(c);
                else if (c < ' ') quoted.Append("\\u").Append(((int)c).ToString("x4"));
                else quoted.Append(c);
            }
            return quoted.Append('"').ToString();
        }
    }
}
