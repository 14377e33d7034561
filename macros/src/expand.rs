//! Code generation for `#[kafka_handler]`.

use proc_macro2::{Group, Ident, Spacing, Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{FnArg, GenericParam, Item, ItemFn, Pat};

use crate::args::{Backoff, Errors, HandlerArgs, ProcessingOrder, RawArgs};

/// Expands the attribute. On any error the user's function is still emitted
/// unchanged beside the errors, so the rest of the crate keeps compiling and
/// the IDE keeps working.
pub(crate) fn kafka_handler(args: TokenStream, item: TokenStream) -> TokenStream {
    let function: ItemFn = match syn::parse2(item.clone()) {
        Ok(function) => function,
        Err(_) => return token_stream_with_error(item.clone(), not_a_fn(item)),
    };
    let args = syn::parse2::<RawArgs>(args).and_then(|args| args.check(&function.sig));
    let signature = check_signature(&function);
    match (args, signature) {
        (Ok(args), Ok(())) => generate(&args, &function),
        (Err(mut error), Err(other)) => {
            error.combine(other);
            token_stream_with_error(item, error)
        }
        (Err(error), _) | (_, Err(error)) => token_stream_with_error(item, error),
    }
}

/// The error for an item that is not a function, on its keyword and name
/// (`struct Order`) rather than across its whole body.
fn not_a_fn(item: TokenStream) -> syn::Error {
    fn head(keyword: &dyn ToTokens, name: &Ident) -> TokenStream {
        quote!(#keyword #name)
    }
    let (what, span) = match syn::parse2::<Item>(item.clone()) {
        Ok(Item::Struct(item)) => ("a struct", head(&item.struct_token, &item.ident)),
        Ok(Item::Enum(item)) => ("an enum", head(&item.enum_token, &item.ident)),
        Ok(Item::Union(item)) => ("a union", head(&item.union_token, &item.ident)),
        Ok(Item::Trait(item)) => ("a trait", head(&item.trait_token, &item.ident)),
        Ok(Item::Type(item)) => ("a type alias", head(&item.type_token, &item.ident)),
        Ok(Item::Const(item)) => ("a const", head(&item.const_token, &item.ident)),
        Ok(Item::Static(item)) => ("a static", head(&item.static_token, &item.ident)),
        Ok(Item::Mod(item)) => ("a module", head(&item.mod_token, &item.ident)),
        Ok(Item::Impl(item)) => {
            let (impl_token, self_ty) = (item.impl_token, item.self_ty);
            ("an impl block", quote!(#impl_token #self_ty))
        }
        _ => ("this item", item),
    };
    syn::Error::new_spanned(
        span,
        format!("#[kafka_handler] applies to a `fn` or `async fn`, not {what}"),
    )
}

fn token_stream_with_error(mut item: TokenStream, error: syn::Error) -> TokenStream {
    item.extend(error.into_compile_error());
    item
}

/// Rejects what the runtime cannot drive, each error on its own token.
fn check_signature(function: &ItemFn) -> syn::Result<()> {
    let sig = &function.sig;
    let mut errors = Errors::default();
    if let Some(unsafety) = &sig.unsafety {
        errors.push(syn::Error::new_spanned(
            unsafety,
            "#[kafka_handler] cannot call an `unsafe fn`",
        ));
    }
    if let Some(abi) = &sig.abi {
        errors.push(syn::Error::new_spanned(
            abi,
            "#[kafka_handler] functions use the Rust ABI",
        ));
    }
    if let Some(variadic) = &sig.variadic {
        errors.push(syn::Error::new_spanned(
            variadic,
            "#[kafka_handler] functions cannot be variadic",
        ));
    }
    for param in &sig.generics.params {
        match param {
            GenericParam::Lifetime(_) => {}
            GenericParam::Type(_) | GenericParam::Const(_) => errors.push(syn::Error::new_spanned(
                param,
                "#[kafka_handler] functions cannot be generic over types or consts: \
                 the runtime has to pick one concrete function to call per record",
            )),
        }
    }
    if let Some(where_clause) = &sig.generics.where_clause {
        errors.push(syn::Error::new_spanned(
            where_clause,
            "#[kafka_handler] functions cannot have a `where` clause",
        ));
    }
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(receiver) => errors.push(syn::Error::new_spanned(
                receiver,
                "#[kafka_handler] functions cannot take `self`: annotate a free function \
                 and keep shared state in a `static` or behind an `Arc` it can reach",
            )),
            FnArg::Typed(arg) => {
                match &*arg.pat {
                    Pat::Ident(ident) if ident.by_ref.is_none() && ident.subpat.is_none() => {}
                    Pat::Wild(_) => {}
                    pattern => errors.push(syn::Error::new_spanned(
                        pattern,
                        "#[kafka_handler] arguments must be plain names (`order: Json<Order>`); \
                         destructure inside the function",
                    )),
                }
                if let syn::Type::ImplTrait(impl_trait) = &*arg.ty {
                    errors.push(syn::Error::new_spanned(
                        impl_trait,
                        "#[kafka_handler] arguments cannot be `impl Trait`: name a concrete \
                         type that implements `FromRecord`",
                    ));
                }
            }
        }
    }
    errors.finish()
}

fn generate(args: &HandlerArgs, function: &ItemFn) -> TokenStream {
    let krate = args
        .krate
        .clone()
        .unwrap_or_else(|| syn::parse_quote!(::kafka_handler));
    let private = quote!(#krate::__private);
    let vis = &function.vis;
    let name = &function.sig.ident;
    let topics = &args.topics;
    let group = &args.group;

    // The function's own lifetime parameters are not in scope in the
    // generated code: where the function's types are repeated there, they
    // become `'_` and are inferred.
    let lifetimes: Vec<Ident> = function
        .sig
        .generics
        .lifetimes()
        .map(|param| param.lifetime.ident.clone())
        .collect();

    let arg_names: Vec<_> = (0..function.sig.inputs.len())
        .map(|i| format_ident!("__kh_arg{}", i))
        .collect();
    // Each extraction is spanned on the argument's type, so a type that is
    // not an extractor is reported on that argument.
    let extractions = function
        .sig
        .inputs
        .iter()
        .zip(&arg_names)
        .map(|(input, arg_name)| {
            let FnArg::Typed(arg) = input else {
                unreachable!("receivers are rejected before generation")
            };
            let ty = elide_lifetimes(arg.ty.to_token_stream(), &lifetimes);
            quote_spanned! {arg.ty.span()=>
                let #arg_name = <#ty as #private::FromRecord<'_>>::from_record(__kh_record)?;
            }
        });
    let call = if function.sig.asyncness.is_some() {
        quote!(#name(#(#arg_names),*).await)
    } else {
        quote!(#name(#(#arg_names),*))
    };
    let returned = |trait_path: TokenStream, method: &str| {
        let method = Ident::new(method, Span::call_site());
        convert_return(
            &function.sig.output,
            &call,
            &trait_path,
            &method,
            &lifetimes,
        )
    };
    let into_outcome = returned(quote!(#private::IntoOutcome), "into_outcome");

    // With `publish`, the return value is encoded and produced, and the
    // record ends when the broker acknowledged every output. The error of
    // a type that cannot be published points at the return type.
    // A batch handler publishes in each record's scope instead
    // (`BatchRecord::publish`, which reads the topic from the handler).
    let publish = args
        .publish
        .as_ref()
        .filter(|_| args.batch.is_none())
        .map(|topic| {
            let encoded = returned(quote!(#private::Publish), "into_encoded");
            quote! {
                let __kh_outputs = #encoded?;
                #private::publish(__kh_record, #topic, __kh_outputs).await
            }
        });

    let constructor = if let Some(publish) = publish {
        // A plain `fn` too: its call runs inline, and the sends are awaited.
        quote! {
            fn __kh_invoke<'r>(__kh_record: &'r #private::Record<'r>) -> #private::HandlerFuture<'r> {
                #private::Box::pin(async move {
                    #(#extractions)*
                    #publish
                })
            }
            #private::Handler::asynchronous(__KH_NAME, [#(#topics),*], #group, __kh_invoke)
        }
    } else if args.batch.is_some() {
        let Some(FnArg::Typed(arg)) = function.sig.inputs.first() else {
            unreachable!("a batch handler's single argument is checked before generation")
        };
        let ty = elide_lifetimes(arg.ty.to_token_stream(), &lifetimes);
        let arg_name = &arg_names[0];
        let decode = quote_spanned! {arg.ty.span()=>
            <#ty as #private::FromBatch<'_>>::from_batch(__kh_input)
        };
        let synchronous = function
            .sig
            .asyncness
            .is_none()
            .then(|| quote!(.synchronous_batch()));
        quote! {
            fn __kh_invoke<'r>(__kh_input: #private::BatchInput<'r>) -> #private::HandlerFuture<'r> {
                #private::Box::pin(async move {
                    // Every record failed to decode: nothing to call it with.
                    let ::core::option::Option::Some(#arg_name) = #decode else {
                        return ::core::result::Result::Ok(());
                    };
                    let __kh_outcome: #private::Outcome = #into_outcome;
                    __kh_outcome
                })
            }
            #private::Handler::batch(__KH_NAME, [#(#topics),*], #group, __kh_invoke) #synchronous
        }
    } else if function.sig.asyncness.is_some() {
        quote! {
            fn __kh_invoke<'r>(__kh_record: &'r #private::Record<'r>) -> #private::HandlerFuture<'r> {
                #private::Box::pin(async move {
                    #(#extractions)*
                    let __kh_outcome: #private::Outcome = #into_outcome;
                    __kh_outcome
                })
            }
            #private::Handler::asynchronous(__KH_NAME, [#(#topics),*], #group, __kh_invoke)
        }
    } else {
        quote! {
            fn __kh_invoke(__kh_record: &#private::Record<'_>) -> #private::Outcome {
                #(#extractions)*
                #into_outcome
            }
            #private::Handler::sync(__KH_NAME, [#(#topics),*], #group, __kh_invoke)
        }
    };
    // Only what the attribute sets: the runtime owns the defaults.
    let mut options: Vec<TokenStream> = Vec::new();
    if let Some(retries) = args.retries {
        options.push(quote!(.with_retries(#retries)));
    }
    if let Some(backoff) = &args.backoff {
        let duration = |nanos: u64| quote!(#private::Duration::from_nanos(#nanos));
        let backoff = match *backoff {
            Backoff::Constant(delay) => {
                let delay = duration(delay);
                quote!(#private::Backoff::constant(#delay))
            }
            Backoff::Exponential { min, max } => {
                let (min, max) = (duration(min), duration(max));
                quote!(#private::Backoff::exponential(#min, #max))
            }
        };
        options.push(quote!(.with_backoff(#backoff)));
    }
    if let Some(dlq) = &args.dlq {
        options.push(quote!(.with_dlq(#dlq)));
    }
    if let Some(publish) = &args.publish {
        options.push(quote!(.with_publish(#publish)));
    }
    if let Some(timeout) = args.timeout {
        options.push(quote!(.with_timeout(#private::Duration::from_nanos(#timeout))));
    }
    if let Some(batch) = &args.batch {
        let max_records = match batch.max_records {
            Some(n) => proc_macro2::Literal::u64_unsuffixed(n).into_token_stream(),
            None => quote!(#private::BatchOptions::DEFAULT_MAX_RECORDS),
        };
        let max_wait = match batch.max_wait {
            Some(nanos) => quote!(#private::Duration::from_nanos(#nanos)),
            None => quote!(#private::BatchOptions::DEFAULT_MAX_WAIT),
        };
        options.push(quote!(.with_batch(#private::BatchOptions::new(#max_records, #max_wait))));
    }
    if let Some(ordering) = args.ordering {
        let variant = match ordering {
            ProcessingOrder::Partition => quote!(Partition),
            ProcessingOrder::Key => quote!(Key),
            ProcessingOrder::Unordered => quote!(Unordered),
        };
        options.push(quote!(.with_ordering(#private::ProcessingOrder::#variant)));
    }
    if let Some(max_in_flight) = args.max_in_flight {
        let max_in_flight = proc_macro2::Literal::u64_unsuffixed(max_in_flight);
        options.push(quote!(.with_max_in_flight(#max_in_flight)));
    }
    if let Some(record_key) = args.record_key {
        options.push(quote!(.with_record_key(#record_key)));
    }
    let doc = format!(
        "The `#[kafka_handler]` descriptor of [`{name}`]: collect it with `kafka_handler::handlers![{name}]`."
    );

    quote! {
        #function

        #[doc = #doc]
        #[allow(non_camel_case_types)]
        #vis struct #name {}

        impl #private::HandlerFactory for #name {
            fn handler() -> #private::Handler {
                const __KH_NAME: &str = ::core::concat!(::core::module_path!(), "::", ::core::stringify!(#name));
                let __kh_handler = { #constructor };
                __kh_handler #(#options)*
            }
        }
    }
}

/// `Trait::method` (`trait_path`, `method`) applied to what `call`
/// returns. Naming the return type in the trait path puts an unsupported
/// return type's error on that type as written. `impl Trait` cannot be
/// named there: its value is bound to a variable spanned on the type
/// instead, so the error points at the type's first token.
fn convert_return(
    output: &syn::ReturnType,
    call: &TokenStream,
    trait_path: &TokenStream,
    method: &Ident,
    lifetimes: &[Ident],
) -> TokenStream {
    match output {
        syn::ReturnType::Type(_, ty) if !contains_impl(ty.to_token_stream()) => {
            let ty_tokens = elide_lifetimes(ty.to_token_stream(), lifetimes);
            quote_spanned! {ty.span()=>
                <#ty_tokens as #trait_path>::#method(#call)
            }
        }
        syn::ReturnType::Type(_, ty) => {
            let returned = quote_spanned!(ty.span()=> __kh_returned);
            quote! {{
                let #returned = #call;
                #trait_path::#method(#returned)
            }}
        }
        // `()`.
        syn::ReturnType::Default => quote!(#trait_path::#method(#call)),
    }
}

/// Replaces the lifetimes named in `lifetimes` (`'a`) by `'_`, keeping every
/// token's span so errors still point at the user's code.
fn elide_lifetimes(tokens: TokenStream, lifetimes: &[Ident]) -> TokenStream {
    let mut out = Vec::new();
    let mut tokens = tokens.into_iter().peekable();
    while let Some(token) = tokens.next() {
        match token {
            TokenTree::Punct(quote)
                if quote.as_char() == '\'' && quote.spacing() == Spacing::Joint =>
            {
                out.push(TokenTree::Punct(quote));
                if let Some(TokenTree::Ident(name)) = tokens.peek() {
                    if lifetimes.contains(name) {
                        out.push(TokenTree::Ident(Ident::new("_", name.span())));
                        tokens.next();
                    }
                }
            }
            TokenTree::Group(group) => {
                let mut elided = Group::new(
                    group.delimiter(),
                    elide_lifetimes(group.stream(), lifetimes),
                );
                elided.set_span(group.span());
                out.push(TokenTree::Group(elided));
            }
            other => out.push(other),
        }
    }
    out.into_iter().collect()
}

/// Whether a type mentions `impl Trait` anywhere.
fn contains_impl(tokens: TokenStream) -> bool {
    tokens.into_iter().any(|token| match token {
        TokenTree::Ident(ident) => ident == "impl",
        TokenTree::Group(group) => contains_impl(group.stream()),
        _ => false,
    })
}
